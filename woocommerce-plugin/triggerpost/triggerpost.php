<?php
/**
 * Plugin Name:          triggerpost for WooCommerce
 * Plugin URI:           https://github.com/triggerpost/triggerpost
 * Description:          Connects the store to triggerpost: a marketing-consent checkbox on the classic and block Checkout, storefront events (product views, carts, checkouts) and carts that can be recovered before "Place order".
 * Version:              1.0.0
 * Requires at least:    6.4
 * Requires PHP:         8.1
 * Requires Plugins:     woocommerce
 * WC requires at least: 8.9
 * WC tested up to:      9.4
 * Author:               triggerpost
 * License:              GPL-2.0-or-later
 * License URI:          https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:          triggerpost
 *
 * @package Triggerpost
 */

defined( 'ABSPATH' ) || exit;

define( 'TRIGGERPOST_VERSION', '1.0.0' );
define( 'TRIGGERPOST_FILE', __FILE__ );
define( 'TRIGGERPOST_DIR', __DIR__ );

require_once __DIR__ . '/includes/class-triggerpost-settings.php';
require_once __DIR__ . '/includes/class-triggerpost-connection.php';
require_once __DIR__ . '/includes/class-triggerpost-consent.php';
require_once __DIR__ . '/includes/class-triggerpost-carts.php';
require_once __DIR__ . '/includes/class-triggerpost-events.php';
require_once __DIR__ . '/includes/class-triggerpost-admin.php';

/**
 * HPOS: the plugin reads and writes order data only through WC_Order
 * (update_meta_data, get_meta), never post meta, so it works with either store.
 */
add_action(
	'before_woocommerce_init',
	static function () {
		if ( class_exists( \Automattic\WooCommerce\Utilities\FeaturesUtil::class ) ) {
			\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'custom_order_tables', TRIGGERPOST_FILE, true );
			\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'cart_checkout_blocks', TRIGGERPOST_FILE, true );
		}
	}
);

register_activation_hook( __FILE__, array( 'Triggerpost_Carts', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'Triggerpost_Carts', 'deactivate' ) );

add_action(
	'plugins_loaded',
	static function () {
		// Without WooCommerce there is no checkout, cart or order to speak of.
		if ( ! function_exists( 'WC' ) ) {
			return;
		}
		$settings = new Triggerpost_Settings();
		( new Triggerpost_Consent( $settings ) )->register();
		$carts = new Triggerpost_Carts( new Triggerpost_Cart_Store() );
		$carts->register();
		( new Triggerpost_Events( $settings, $carts ) )->register();
		if ( is_admin() ) {
			( new Triggerpost_Admin( $settings ) )->register();
		}
	}
);
