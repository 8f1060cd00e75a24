<?php
/**
 * Storefront events: what the shop's pages tell the browser script to send.
 *
 * @package Triggerpost
 */

defined( 'ABSPATH' ) || exit;

/**
 * Prints the page's facts (product, cart, customer) for assets/triggerpost.js,
 * which sends the events to triggerpost with navigator.sendBeacon.
 *
 * Adds to cart are seen on the server, in `woocommerce_add_to_cart`: the one
 * hook every way of adding runs through (product form, AJAX buttons on
 * archives, the Store API behind the cart and product blocks), where the
 * product, quantity and variation are known exactly. The event waits in the
 * WooCommerce session and goes out with the next page, or, after an add that
 * loads no page, when the script asks for it (`?wc-ajax=triggerpost_state`,
 * on jQuery's `added_to_cart` and the blocks' `wc-blocks_added_to_cart`).
 * Each event has its id from the server, so one fetched twice is stored once.
 *
 * Nothing is printed, and no script loaded, until the store is connected.
 */
class Triggerpost_Events {

	const SESSION_PENDING = 'triggerpost_pending_events';
	const MAX_PENDING     = 20;
	const MAX_ITEMS       = 100;
	const AJAX_ACTION     = 'triggerpost_state';

	/**
	 * Settings.
	 *
	 * @var Triggerpost_Settings
	 */
	private $settings;

	/**
	 * Carts (tokens).
	 *
	 * @var Triggerpost_Carts
	 */
	private $carts;

	/**
	 * Constructor.
	 *
	 * @param Triggerpost_Settings $settings Settings.
	 * @param Triggerpost_Carts    $carts    Carts.
	 */
	public function __construct( Triggerpost_Settings $settings, Triggerpost_Carts $carts ) {
		$this->settings = $settings;
		$this->carts    = $carts;
	}

	/**
	 * Attach to WordPress and WooCommerce.
	 *
	 * @return void
	 */
	public function register() {
		add_action( 'woocommerce_add_to_cart', array( $this, 'remember_add_to_cart' ), 10, 4 );
		add_action( 'wp_enqueue_scripts', array( $this, 'enqueue' ) );
		add_action( 'wp_footer', array( $this, 'print_page_data' ), 5 );
		add_action( 'wc_ajax_' . self::AJAX_ACTION, array( $this, 'answer_state' ) );
	}

	/**
	 * Whether events are sent at all.
	 *
	 * @return bool
	 */
	public function enabled() {
		return null !== $this->settings->events_endpoint();
	}

	/**
	 * An event id: 24 random characters of [A-Za-z0-9].
	 *
	 * @return string
	 */
	private static function event_id() {
		return wp_generate_password( 24, false, false );
	}

	/**
	 * ISO 8601 UTC with milliseconds, as browsers write it.
	 *
	 * @param float|null $at Unix seconds (now when null).
	 * @return string
	 */
	public static function iso( $at = null ) {
		$at = null === $at ? microtime( true ) : $at;
		return gmdate( 'Y-m-d\TH:i:s', (int) $at ) . sprintf( '.%03dZ', (int) ( fmod( $at, 1 ) * 1000 ) );
	}

	/**
	 * A decimal string of a price, in the store's decimals.
	 *
	 * @param mixed $amount A number or numeric string.
	 * @return string
	 */
	private static function money( $amount ) {
		return number_format( (float) $amount, max( 0, (int) wc_get_price_decimals() ), '.', '' );
	}

	/**
	 * Plain text of a product name (names may hold markup or entities).
	 *
	 * @param string $text The text.
	 * @return string
	 */
	private static function plain( $text ) {
		return html_entity_decode( wp_strip_all_tags( (string) $text ), ENT_QUOTES | ENT_HTML5, 'UTF-8' );
	}

	/**
	 * A product's image URL, or null.
	 *
	 * @param WC_Product $product The product.
	 * @return string|null
	 */
	private static function image_url( $product ) {
		$image_id = $product->get_image_id();
		$url      = $image_id ? wp_get_attachment_image_url( $image_id, 'woocommerce_thumbnail' ) : false;
		return is_string( $url ) && '' !== $url ? $url : null;
	}

	/**
	 * PRODUCT of the contract for a product (a variation speaks as its parent
	 * with variant_id).
	 *
	 * @param WC_Product $product The product or variation.
	 * @return array
	 */
	public static function product_data( $product ) {
		$parent_id = (int) $product->get_parent_id();
		$data      = array( 'id' => (string) ( $parent_id ? $parent_id : $product->get_id() ) );
		if ( $parent_id ) {
			$data['variant_id'] = (string) $product->get_id();
		}
		$data['title'] = self::plain( $product->get_name() );
		$data['url']   = (string) $product->get_permalink();
		if ( '' !== (string) $product->get_price() ) {
			$data['price']    = self::money( $product->get_price() );
			$data['currency'] = get_woocommerce_currency();
		}
		$image = self::image_url( $product );
		if ( null !== $image ) {
			$data['image_url'] = $image;
		}
		return $data;
	}

	/**
	 * CART of the contract for the session's cart, or null when it is empty.
	 *
	 * @return array|null
	 */
	public function cart_data() {
		$cart = WC()->cart;
		if ( ! $cart || $cart->is_empty() ) {
			return null;
		}
		$token = $this->carts->token();
		if ( null === $token ) {
			return null;
		}
		$items = array();
		foreach ( $cart->get_cart() as $item ) {
			$product = $item['data'] ?? null;
			if ( ! $product || count( $items ) >= self::MAX_ITEMS ) {
				continue;
			}
			$line = array( 'product_id' => (string) $item['product_id'] );
			if ( ! empty( $item['variation_id'] ) ) {
				$line['variant_id'] = (string) $item['variation_id'];
			}
			$line['title']    = self::plain( $product->get_name() );
			$line['quantity'] = (int) $item['quantity'];
			$line['price']    = self::money( $product->get_price() );
			$image            = self::image_url( $product );
			if ( null !== $image ) {
				$line['image_url'] = $image;
			}
			$line['url'] = (string) $product->get_permalink();
			$items[]     = $line;
		}
		return array(
			'token'    => $token,
			'items'    => $items,
			'total'    => self::money( $cart->get_total( 'edit' ) ),
			'currency' => get_woocommerce_currency(),
		);
	}

	/**
	 * CUSTOMER of the contract for a logged-in customer, or null.
	 *
	 * @return array|null
	 */
	public static function customer_data() {
		if ( ! is_user_logged_in() ) {
			return null;
		}
		$user = wp_get_current_user();
		if ( ! $user || ! is_email( $user->user_email ) ) {
			return null;
		}
		return array_filter(
			array(
				'email'       => (string) $user->user_email,
				'customer_id' => (string) $user->ID,
				'first_name'  => (string) $user->first_name,
				'last_name'   => (string) $user->last_name,
			),
			static fn( $value ) => '' !== $value
		);
	}

	/**
	 * `woocommerce_add_to_cart`: keep a product_added_to_cart event for the
	 * next page (the cart is filled in by the script when it sends).
	 *
	 * @param string $cart_item_key The cart item.
	 * @param int    $product_id    The product.
	 * @param int    $quantity      How many were added.
	 * @param int    $variation_id  The variation, or 0.
	 * @return void
	 */
	public function remember_add_to_cart( $cart_item_key, $product_id, $quantity, $variation_id = 0 ) {
		if ( ! $this->enabled() || $this->carts->is_restoring() || ! WC()->session ) {
			return;
		}
		$product = wc_get_product( $variation_id ? $variation_id : $product_id );
		if ( ! $product ) {
			return;
		}
		$data     = array(
			'product'  => self::product_data( $product ),
			'quantity' => max( 1, (int) $quantity ),
		);
		$customer = self::customer_data();
		if ( null !== $customer ) {
			$data['customer'] = $customer;
		}
		$pending   = $this->pending();
		$pending[] = array(
			'id'   => self::event_id(),
			'type' => 'product_added_to_cart',
			'at'   => self::iso(),
			'data' => $data,
		);
		WC()->session->set( self::SESSION_PENDING, array_slice( $pending, -self::MAX_PENDING ) );
	}

	/**
	 * The events waiting in the session.
	 *
	 * @return array
	 */
	private function pending() {
		$pending = WC()->session ? WC()->session->get( self::SESSION_PENDING ) : null;
		return is_array( $pending ) ? $pending : array();
	}

	/**
	 * The waiting events, which leave the session.
	 *
	 * @return array
	 */
	public function take_pending() {
		$pending = $this->pending();
		if ( $pending ) {
			WC()->session->set( self::SESSION_PENDING, null );
		}
		return $pending;
	}

	/**
	 * What kind of page this is, for the script.
	 *
	 * @return string product, cart, checkout or other.
	 */
	private static function page_kind() {
		if ( function_exists( 'is_product' ) && is_product() ) {
			return 'product';
		}
		if ( function_exists( 'is_cart' ) && is_cart() ) {
			return 'cart';
		}
		if ( function_exists( 'is_checkout' ) && is_checkout() && ! is_order_received_page() ) {
			return 'checkout';
		}
		return 'other';
	}

	/**
	 * Everything the script needs on this page.
	 *
	 * @return array
	 */
	public function page_data() {
		$kind = self::page_kind();
		$data = array(
			'endpoint' => $this->settings->events_endpoint(),
			'stateUrl' => WC_AJAX::get_endpoint( self::AJAX_ACTION ),
			'page'     => $kind,
			'cart'     => in_array( $kind, array( 'cart', 'checkout' ), true ) || $this->pending() ? $this->cart_data() : null,
			'customer' => self::customer_data(),
			'events'   => $this->take_pending(),
		);
		if ( 'product' === $kind ) {
			$product = wc_get_product( get_queried_object_id() );
			if ( $product ) {
				$data['product'] = self::product_data( $product );
			}
		}
		return $data;
	}

	/**
	 * JSON safe inside a <script> element: <, >, &, ' and " as \u escapes, so
	 * no product name or URL can close the element or start markup.
	 *
	 * @param mixed $data The data.
	 * @return string
	 */
	public static function script_json( $data ) {
		return (string) wp_json_encode( $data, JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE );
	}

	/**
	 * The script, on shop pages, once connected.
	 *
	 * @return void
	 */
	public function enqueue() {
		if ( ! $this->enabled() ) {
			return;
		}
		wp_enqueue_script(
			'triggerpost-storefront',
			plugins_url( 'assets/triggerpost.js', TRIGGERPOST_FILE ),
			array(),
			TRIGGERPOST_VERSION,
			array(
				'in_footer' => true,
				'strategy'  => 'defer',
			)
		);
	}

	/**
	 * `wp_footer`: the page's data as a JSON script element.
	 *
	 * @return void
	 */
	public function print_page_data() {
		if ( ! $this->enabled() ) {
			return;
		}
		echo '<script type="application/json" id="triggerpost-data">' . self::script_json( $this->page_data() ) . "</script>\n"; // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- script_json escapes for this context.
	}

	/**
	 * The state after an add that loaded no page: waiting events and the cart.
	 *
	 * Only for this visitor's own session; the custom header the script sends
	 * cannot be sent by another site without a CORS preflight WordPress does
	 * not grant, so no other site can make a browser drain its events.
	 *
	 * @return void
	 */
	public function answer_state() {
		if ( ! $this->enabled() || empty( $_SERVER['HTTP_X_TRIGGERPOST'] ) ) {
			wp_send_json( array( 'error' => 'not available' ), 400 );
			return;
		}
		wp_send_json(
			array(
				'events' => $this->take_pending(),
				'cart'   => $this->cart_data(),
			)
		);
	}
}
