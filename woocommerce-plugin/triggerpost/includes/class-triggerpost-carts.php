<?php
/**
 * Cart tokens, cart snapshots and the recovery link.
 *
 * @package Triggerpost
 */

defined( 'ABSPATH' ) || exit;

/**
 * The carts table: one row per cart token, what the cart held, kept 30 days.
 *
 * Its own table rather than options: a store sees many carts, and options are
 * read in bulk by other code; a primary-key lookup and one ranged delete a day
 * is all this needs.
 */
class Triggerpost_Cart_Store {

	const TABLE_SUFFIX = 'triggerpost_carts';

	/** Days a snapshot is kept after its cart last changed. */
	const KEEP_DAYS = 30;

	/**
	 * The table's name with the site's prefix.
	 *
	 * @return string
	 */
	public static function table() {
		global $wpdb;
		return $wpdb->prefix . self::TABLE_SUFFIX;
	}

	/**
	 * Create or upgrade the table (activation).
	 *
	 * @return void
	 */
	public static function install() {
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table   = self::table();
		$charset = $wpdb->get_charset_collate();
		dbDelta(
			"CREATE TABLE {$table} (
  token char(32) NOT NULL,
  contents longtext NOT NULL,
  updated_at datetime NOT NULL,
  PRIMARY KEY  (token),
  KEY updated_at (updated_at)
) {$charset};"
		);
	}

	/**
	 * Store a cart's items under its token (replacing what was there).
	 *
	 * @param string $token The cart token.
	 * @param array  $items Items: product_id, variation_id, quantity, variation.
	 * @param int    $now   Unix seconds.
	 * @return void
	 */
	public function save( $token, array $items, $now ) {
		global $wpdb;
		$table = self::table();
		// phpcs:ignore WordPress.DB.DirectDatabaseQuery -- our own table; nothing to cache.
		$wpdb->query(
			$wpdb->prepare(
				"REPLACE INTO {$table} (token, contents, updated_at) VALUES (%s, %s, %s)", // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
				$token,
				wp_json_encode( array( 'items' => array_values( $items ) ) ),
				gmdate( 'Y-m-d H:i:s', $now )
			)
		);
	}

	/**
	 * A token's items, or null when there is no live snapshot.
	 *
	 * @param string $token The cart token.
	 * @param int    $now   Unix seconds.
	 * @return array|null
	 */
	public function find( $token, $now ) {
		global $wpdb;
		$table = self::table();
		// phpcs:ignore WordPress.DB.DirectDatabaseQuery
		$row = $wpdb->get_row(
			$wpdb->prepare(
				"SELECT contents FROM {$table} WHERE token = %s AND updated_at >= %s", // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
				$token,
				gmdate( 'Y-m-d H:i:s', $now - self::KEEP_DAYS * DAY_IN_SECONDS )
			),
			ARRAY_A
		);
		if ( ! is_array( $row ) ) {
			return null;
		}
		$contents = json_decode( (string) $row['contents'], true );
		return is_array( $contents['items'] ?? null ) ? $contents['items'] : null;
	}

	/**
	 * Delete snapshots older than KEEP_DAYS.
	 *
	 * @param int $now Unix seconds.
	 * @return int Rows deleted.
	 */
	public function prune( $now ) {
		global $wpdb;
		$table = self::table();
		// phpcs:ignore WordPress.DB.DirectDatabaseQuery
		$deleted = $wpdb->query(
			$wpdb->prepare(
				"DELETE FROM {$table} WHERE updated_at < %s", // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
				gmdate( 'Y-m-d H:i:s', $now - self::KEEP_DAYS * DAY_IN_SECONDS )
			)
		);
		return (int) $deleted;
	}
}

/**
 * A token per WooCommerce session's cart, its snapshot, the recovery link
 * `<home>/?triggerpost_cart=<token>` and the token on the order.
 *
 * The token names one checkout at triggerpost (`cart-<token>`): the storefront
 * events carry it, and the order created from the cart carries it as meta
 * `_triggerpost_cart_token`, so the cart and the order it became are one
 * checkout and never two emails. A new cart after an order gets a new token.
 */
class Triggerpost_Carts {

	const SESSION_TOKEN = 'triggerpost_cart_token';
	const SESSION_HASH  = 'triggerpost_cart_hash';
	const ORDER_META    = '_triggerpost_cart_token';
	const QUERY_VAR     = 'triggerpost_cart';
	const CRON_HOOK     = 'triggerpost_prune_carts';
	const TOKEN_PATTERN = '/^[A-Za-z0-9]{32}$/';

	/**
	 * The snapshots.
	 *
	 * @var Triggerpost_Cart_Store
	 */
	private $store;

	/**
	 * True while a recovery link refills the cart (its own adds are not events).
	 *
	 * @var bool
	 */
	private $restoring = false;

	/**
	 * Constructor.
	 *
	 * @param Triggerpost_Cart_Store $store The snapshots.
	 */
	public function __construct( Triggerpost_Cart_Store $store ) {
		$this->store = $store;
	}

	/**
	 * Activation: the table and the daily prune.
	 *
	 * @return void
	 */
	public static function activate() {
		Triggerpost_Cart_Store::install();
		self::schedule_prune();
	}

	/**
	 * The daily prune, scheduled once.
	 *
	 * @return void
	 */
	public static function schedule_prune() {
		if ( ! wp_next_scheduled( self::CRON_HOOK ) ) {
			wp_schedule_event( time() + HOUR_IN_SECONDS, 'daily', self::CRON_HOOK );
		}
	}

	/**
	 * Deactivation: no prune left scheduled (the table stays until uninstall).
	 *
	 * @return void
	 */
	public static function deactivate() {
		wp_clear_scheduled_hook( self::CRON_HOOK );
	}

	/**
	 * Attach to WooCommerce.
	 *
	 * @return void
	 */
	public function register() {
		add_action( 'woocommerce_cart_updated', array( $this, 'snapshot' ) );
		add_action( 'woocommerce_cart_emptied', array( $this, 'forget_token' ) );
		add_action( 'wp_loaded', array( $this, 'handle_recovery_link' ), 20 );
		add_action( 'woocommerce_checkout_create_order', array( $this, 'tag_order' ) );
		add_action( 'woocommerce_store_api_checkout_update_order_meta', array( $this, 'tag_order' ) );
		add_action( 'woocommerce_store_api_checkout_update_order_from_request', array( $this, 'tag_order' ) );
		add_action( self::CRON_HOOK, array( $this, 'prune' ) );
	}

	/**
	 * Whether a recovery link is refilling the cart right now.
	 *
	 * @return bool
	 */
	public function is_restoring() {
		return $this->restoring;
	}

	/**
	 * This session's cart token, made on first need; null without a session
	 * (a visitor who never had a cart has none).
	 *
	 * @param bool $create Make one when there is none.
	 * @return string|null
	 */
	public function token( $create = true ) {
		$session = WC()->session;
		if ( ! $session ) {
			return null;
		}
		$token = $session->get( self::SESSION_TOKEN );
		if ( is_string( $token ) && preg_match( self::TOKEN_PATTERN, $token ) ) {
			return $token;
		}
		if ( ! $create ) {
			return null;
		}
		$token = wp_generate_password( 32, false, false );
		$session->set( self::SESSION_TOKEN, $token );
		return $token;
	}

	/**
	 * The cart's items as the snapshot keeps them.
	 *
	 * @return array
	 */
	private function current_items() {
		$items = array();
		foreach ( WC()->cart->get_cart() as $item ) {
			$items[] = array(
				'product_id'   => (int) $item['product_id'],
				'variation_id' => (int) ( $item['variation_id'] ?? 0 ),
				'quantity'     => (int) $item['quantity'],
				'variation'    => is_array( $item['variation'] ?? null ) ? $item['variation'] : array(),
			);
		}
		return $items;
	}

	/**
	 * After each cart change: the snapshot, written only when the cart differs
	 * from the last one written for this session.
	 *
	 * @return void
	 */
	public function snapshot() {
		if ( $this->restoring || ! WC()->session || ! WC()->cart || WC()->cart->is_empty() ) {
			return;
		}
		$items = $this->current_items();
		$hash  = md5( wp_json_encode( $items ) );
		$token = $this->token();
		if ( WC()->session->get( self::SESSION_HASH ) === $token . ':' . $hash ) {
			return;
		}
		$this->store->save( $token, $items, time() );
		WC()->session->set( self::SESSION_HASH, $token . ':' . $hash );
	}

	/**
	 * The cart was emptied (an order paid, or the shopper emptied it): the next
	 * cart is another checkout.
	 *
	 * @return void
	 */
	public function forget_token() {
		if ( $this->restoring || ! WC()->session ) {
			return;
		}
		WC()->session->set( self::SESSION_TOKEN, null );
		WC()->session->set( self::SESSION_HASH, null );
	}

	/**
	 * The order created from this cart carries its token.
	 *
	 * @param WC_Order $order The order (WooCommerce saves it after the hook).
	 * @return void
	 */
	public function tag_order( $order ) {
		$token = $this->token( false );
		if ( null !== $token && (string) $order->get_meta( self::ORDER_META ) !== $token ) {
			$order->update_meta_data( self::ORDER_META, $token );
		}
	}

	/**
	 * The link that restores this cart.
	 *
	 * @param string $token A cart token.
	 * @return string
	 */
	public static function recovery_url( $token ) {
		return add_query_arg( self::QUERY_VAR, rawurlencode( $token ), home_url( '/' ) );
	}

	/**
	 * `?triggerpost_cart=<token>`: restore and go to the checkout.
	 *
	 * @return void
	 */
	public function handle_recovery_link() {
		if ( ! isset( $_GET[ self::QUERY_VAR ] ) ) { // phpcs:ignore WordPress.Security.NonceVerification.Recommended -- a link from an email; it only fills this visitor's own cart.
			return;
		}
		$token = sanitize_text_field( wp_unslash( $_GET[ self::QUERY_VAR ] ) ); // phpcs:ignore WordPress.Security.NonceVerification.Recommended
		wp_safe_redirect( $this->restore( $token ) );
		exit;
	}

	/**
	 * Refill the cart from a token's snapshot and adopt the token.
	 *
	 * Products deleted or no longer purchasable are skipped; an unknown or
	 * expired token leaves the cart as it is and goes to the cart page.
	 *
	 * @param string $token The token from the link.
	 * @return string Where to send the visitor.
	 */
	public function restore( $token ) {
		$items = preg_match( self::TOKEN_PATTERN, (string) $token ) ? $this->store->find( $token, time() ) : null;
		if ( null === $items || ! WC()->session || ! WC()->cart ) {
			return wc_get_cart_url();
		}
		$this->restoring = true;
		try {
			// The token first: every cart change below is this cart's.
			WC()->session->set( self::SESSION_TOKEN, $token );
			WC()->session->set( self::SESSION_HASH, null );
			// WooCommerce may load the session's cart lazily, on first read: read
			// it now, so it cannot come back into the cart after it is emptied.
			WC()->cart->get_cart();
			WC()->cart->empty_cart();
			foreach ( $items as $item ) {
				$product_id   = (int) ( $item['product_id'] ?? 0 );
				$variation_id = (int) ( $item['variation_id'] ?? 0 );
				$quantity     = max( 1, (int) ( $item['quantity'] ?? 1 ) );
				$product      = wc_get_product( $variation_id ? $variation_id : $product_id );
				if ( ! $product || ! $product->is_purchasable() ) {
					continue;
				}
				$variation = is_array( $item['variation'] ?? null ) ? array_map( 'strval', $item['variation'] ) : array();
				WC()->cart->add_to_cart( $product_id, $quantity, $variation_id, $variation );
			}
			WC()->session->set_customer_session_cookie( true );
		} finally {
			$this->restoring = false;
		}
		return WC()->cart->is_empty() ? wc_get_cart_url() : wc_get_checkout_url();
	}

	/**
	 * WP-Cron, daily: snapshots older than 30 days go.
	 *
	 * @return void
	 */
	public function prune() {
		$this->store->prune( time() );
	}
}
