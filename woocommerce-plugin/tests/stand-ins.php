<?php
/**
 * Stand-ins: the smallest honest versions of what the plugin calls that is
 * not in the WordPress core files the bootstrap loads. WordPress parts stand
 * in for a running site (options in memory, a current user); WooCommerce parts
 * follow WooCommerce's documented signatures and fire the same hooks, through
 * WordPress's real hook system, that WooCommerce fires at those points.
 *
 * @package Triggerpost
 */

// phpcs:disable Generic.Files.OneObjectStructurePerFile, Squiz.Commenting

/** wp_die() in a test. */
class Test_Died extends RuntimeException {}

/** Everything a test may reset. */
final class Test_Site {
	public static ?WP_User $user      = null;
	public static array $caps         = array();
	public static array $scripts      = array();
	public static array $menu_pages   = array();
	public static array $block_fields = array();
	public static array $products     = array();
	public static string $page        = 'other';
	public static int $queried_id     = 0;
	public static array $declared     = array();
	public static array $notices      = array();

	public static function reset(): void {
		$GLOBALS['wpdb']->reset();
		wp_cache_flush();
		foreach ( array(
			'home'            => 'https://shop.example',
			'siteurl'         => 'https://shop.example',
			'date_format'     => 'Y-m-d',
			'time_format'     => 'H:i',
			'timezone_string' => 'UTC',
		) as $name => $value ) {
			update_option( $name, $value );
		}
		self::$user         = null;
		self::$caps         = array();
		self::$scripts      = array();
		self::$menu_pages   = array();
		self::$block_fields = array();
		self::$products     = array();
		self::$page         = 'other';
		self::$queried_id   = 0;
		self::$declared     = array();
		self::$notices      = array();
		$_GET               = array();
		$_POST              = array();
		$_REQUEST           = array();
		$_SERVER['REQUEST_URI'] = '/wp-admin/admin.php?page=triggerpost';
		$_SERVER['HTTP_HOST']   = 'shop.example';
		$_SERVER['HTTPS']       = 'on';
		WC_Stand_In::$instance  = new WC_Stand_In();
	}
}

/* ---- WordPress: a running site (options are WordPress's own, on Test_Wpdb) -- */

function get_bloginfo( $show = '' ) {
	return 'version' === $show ? '6.1' : 'https://shop.example';
}
function wp_get_current_user() {
	return Test_Site::$user ?? new WP_User();
}
function is_user_logged_in() {
	return null !== Test_Site::$user;
}
function get_current_user_id() {
	return Test_Site::$user ? Test_Site::$user->ID : 0;
}
function current_user_can( $capability ) {
	return in_array( $capability, Test_Site::$caps, true );
}
function wp_get_session_token() {
	return Test_Site::$user ? 'session-' . Test_Site::$user->ID : '';
}
/** A user as WP_User exposes one (the real class needs the users table). */
class WP_User {
	public $ID         = 0;
	public $user_email = '';
	public $first_name = '';
	public $last_name  = '';
	public function __construct( $id = 0, $email = '', $first = '', $last = '' ) {
		$this->ID         = (int) $id;
		$this->user_email = $email;
		$this->first_name = $first;
		$this->last_name  = $last;
	}
	public function exists() {
		return $this->ID > 0;
	}
}
function wp_enqueue_script( $handle, $src = '', $deps = array(), $ver = false, $args = array() ) {
	Test_Site::$scripts[ $handle ] = compact( 'src', 'deps', 'ver', 'args' );
}
function add_submenu_page( $parent, $page_title, $menu_title, $capability, $slug, $callback = null ) {
	Test_Site::$menu_pages[] = compact( 'parent', 'page_title', 'menu_title', 'capability', 'slug', 'callback' );
	return $slug;
}
function submit_button( $text = null, $type = 'primary', $name = 'submit', $wrap = true ) {
	echo '<input type="submit" name="' . esc_attr( $name ) . '" class="button button-' . esc_attr( $type ) . '" value="' . esc_attr( $text ) . '">';
}
function get_queried_object_id() {
	return Test_Site::$queried_id;
}
function wp_get_attachment_image_url( $id, $size = 'thumbnail' ) {
	return $id ? "https://shop.example/wp-content/uploads/image-{$id}-{$size}.jpg" : false;
}

/* ---- WooCommerce ------------------------------------------------------ */

/** WC(): the session, cart and customer of this request. */
final class WC_Stand_In {
	public static ?WC_Stand_In $instance = null;
	public ?WC_Session_Stand_In $session;
	public ?WC_Cart_Stand_In $cart;
	public function __construct() {
		$this->session = new WC_Session_Stand_In();
		$this->cart    = new WC_Cart_Stand_In();
	}
}
function WC() { // phpcs:ignore WordPress.NamingConventions.ValidFunctionName
	return WC_Stand_In::$instance;
}

/** WC_Session_Handler's get/set. */
final class WC_Session_Stand_In {
	public array $data          = array();
	public bool $cookie_set     = false;
	public function get( $key, $default_value = null ) {
		return $this->data[ $key ] ?? $default_value;
	}
	public function set( $key, $value ) {
		$this->data[ $key ] = $value;
	}
	public function set_customer_session_cookie( $set ) {
		$this->cookie_set = (bool) $set;
	}
}

/**
 * WC_Cart: items keyed by cart item key; add_to_cart fires
 * `woocommerce_add_to_cart` with the same arguments WooCommerce passes,
 * empty_cart fires `woocommerce_cart_emptied`, and each change ends with
 * `woocommerce_cart_updated` as WC_Cart_Session::set_session does.
 */
final class WC_Cart_Stand_In {
	public array $contents = array();
	public function get_cart() {
		return $this->contents;
	}
	public function is_empty() {
		return 0 === count( $this->contents );
	}
	public function add_to_cart( $product_id = 0, $quantity = 1, $variation_id = 0, $variation = array(), $cart_item_data = array() ) {
		$product = wc_get_product( $variation_id ? $variation_id : $product_id );
		if ( ! $product ) {
			return false; // WooCommerce: silently, for a product that does not exist.
		}
		if ( ! $product->is_purchasable() ) {
			// WooCommerce: an error notice the shopper sees on the next page.
			Test_Site::$notices[] = 'Sorry, this product cannot be purchased.';
			return false;
		}
		$key = md5( $product_id . ':' . $variation_id . ':' . wp_json_encode( $variation ) );
		if ( isset( $this->contents[ $key ] ) ) {
			$this->contents[ $key ]['quantity'] += $quantity;
		} else {
			$this->contents[ $key ] = array(
				'key'          => $key,
				'product_id'   => $product_id,
				'variation_id' => $variation_id,
				'variation'    => $variation,
				'quantity'     => $quantity,
				'data'         => $product,
			);
		}
		do_action( 'woocommerce_add_to_cart', $key, $product_id, $quantity, $variation_id, $variation, $cart_item_data );
		do_action( 'woocommerce_cart_updated' );
		return $key;
	}
	public function empty_cart( $clear_persistent_cart = true ) {
		$this->contents = array();
		do_action( 'woocommerce_cart_emptied', $clear_persistent_cart );
		do_action( 'woocommerce_cart_updated' );
	}
	public function get_total( $context = 'view' ) {
		$total = 0.0;
		foreach ( $this->contents as $item ) {
			$total += (float) $item['data']->get_price() * $item['quantity'];
		}
		return (string) $total;
	}
}

/** WC_Data's meta API (what HPOS requires: no post meta). */
abstract class WC_Data_Stand_In {
	public array $meta = array();
	public int $saves  = 0;
	public function __construct( public int $id = 0 ) {}
	public function get_id() {
		return $this->id;
	}
	public function get_meta( $key = '', $single = true, $context = 'view' ) {
		return $this->meta[ $key ] ?? '';
	}
	public function update_meta_data( $key, $value, $meta_id = 0 ) {
		$this->meta[ $key ] = $value;
	}
	public function save() {
		++$this->saves;
		return $this->id;
	}
}
class WC_Order extends WC_Data_Stand_In {}
class WC_Customer extends WC_Data_Stand_In {}

/** WC_Product as the plugin reads it. */
class WC_Product {
	public function __construct(
		public int $id,
		public string $name,
		public string $price,
		public int $parent_id = 0,
		public int $image_id = 0,
		public bool $purchasable = true
	) {}
	public function get_id() {
		return $this->id;
	}
	public function get_parent_id() {
		return $this->parent_id;
	}
	public function get_name() {
		return $this->name;
	}
	public function get_price() {
		return $this->price;
	}
	public function get_image_id() {
		return $this->image_id;
	}
	public function get_permalink() {
		return 'https://shop.example/product/' . ( $this->parent_id ? $this->parent_id : $this->id ) . '/';
	}
	public function is_purchasable() {
		return $this->purchasable;
	}
}
function wc_get_product( $id ) {
	return Test_Site::$products[ (int) $id ] ?? false;
}
function wc_get_price_decimals() {
	return 2;
}
function get_woocommerce_currency() {
	return 'SEK';
}
function wc_get_cart_url() {
	return 'https://shop.example/cart/';
}
function wc_get_checkout_url() {
	return 'https://shop.example/checkout/';
}
function is_product() {
	return 'product' === Test_Site::$page;
}
function is_cart() {
	return 'cart' === Test_Site::$page;
}
function is_checkout() {
	return in_array( Test_Site::$page, array( 'checkout', 'order-received' ), true );
}
function is_order_received_page() {
	return 'order-received' === Test_Site::$page;
}
/** WC_AJAX::get_endpoint: `?wc-ajax=<action>` on the home URL. */
class WC_AJAX {
	public static function get_endpoint( $request = '' ) {
		return '/?wc-ajax=' . rawurlencode( $request );
	}
}
/** The additional checkout fields API (WooCommerce 8.9+): records what is registered. */
function woocommerce_register_additional_checkout_field( $options ) {
	Test_Site::$block_fields[] = $options;
}
