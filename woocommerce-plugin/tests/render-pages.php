<?php
/**
 * Renders the plugin's pages for the browser check (browser_check.py):
 * the settings screen and shop pages with the data the plugin prints, through
 * the same bootstrap as the PHPUnit tests (WordPress core, WooCommerce
 * stand-ins). The settings screen's status comes from a canned triggerpost
 * answer; its frame is a minimal wp-admin page with WordPress's own admin CSS.
 *
 * Usage: php render-pages.php <output directory>
 *
 * @package Triggerpost
 */

require __DIR__ . '/bootstrap.php';

$out = $argv[1] ?? '';
if ( '' === $out || ! is_dir( $out ) ) {
	fwrite( STDERR, "usage: php render-pages.php <existing directory>\n" );
	exit( 2 );
}

const RP_CODE = 'eyJ2IjoxLCJ1cmwiOiJodHRwczovL2FwcC50cmlnZ2VycG9zdC5leGFtcGxlIiwicGxhdGZvcm0iOiJ3b29jb21tZXJjZSIsImtleSI6InBrX2FiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6Iiwic2VjcmV0IjoiWm05dlltRnlYM1J5YVdkblpYSndiM04wWDNCc2RXZHBibDl6WldOeVpYUSJ9';

/**
 * Output of a callable.
 *
 * @param callable $render What prints.
 * @return string
 */
function rp_capture( callable $render ) {
	ob_start();
	$render();
	return (string) ob_get_clean();
}

/**
 * A fresh site, connected, with a catalogue.
 *
 * @return void
 */
function rp_fresh_site() {
	$GLOBALS['wp_filter'] = array();
	Test_Site::reset();
	( new Triggerpost_Settings() )->update( array( 'connection' => Triggerpost_Connection::parse_code( RP_CODE ) ) );
	Test_Site::$products[10] = new WC_Product( 10, 'Stoneware mug "Fika" & co\'s', '12.5', 0, 501 );
	Test_Site::$products[20] = new WC_Product( 20, 'Linen shirt', '25.00' );
	Test_Site::$products[21] = new WC_Product( 21, 'Linen shirt - Blue, M', '26', 20 );
	$carts = new Triggerpost_Carts( new Triggerpost_Cart_Store() );
	$carts->register();
	$GLOBALS['rp_events'] = new Triggerpost_Events( new Triggerpost_Settings(), $carts );
	$GLOBALS['rp_events']->register();
}

/**
 * A shop page: the markup given, then what the plugin prints in the footer.
 *
 * @param string $body The page's own markup.
 * @return string
 */
function rp_shop_page( $body ) {
	$footer = rp_capture( fn() => do_action( 'wp_footer' ) );
	return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Shop</title></head><body>\n{$body}\n{$footer}<script src=\"https://shop.example/wp-content/plugins/triggerpost/assets/triggerpost.js\" defer></script>\n</body></html>\n";
}

// The settings screen, connected, with triggerpost's status answer.
rp_fresh_site();
Test_Site::$user = new WP_User( 1, 'owner@shop.example', 'Olle', 'Owner' );
Test_Site::$caps = array( 'manage_woocommerce' );
add_filter(
	'pre_http_request',
	static fn() => array(
		'headers'  => array(),
		'body'     => '{"shop":"shop.example","connected":true,"events_last_24h":1284,"last_event_at":"2026-12-07T09:58:12Z","app_url":"https://app.triggerpost.example/app/"}',
		'response' => array(
			'code'    => 200,
			'message' => 'OK',
		),
		'cookies'  => array(),
		'filename' => null,
	)
);
( new Triggerpost_Settings() )->update( array( 'consent_label' => 'Email me news and offers from Fika & Co' ) );
$admin = rp_capture( array( new Triggerpost_Admin( new Triggerpost_Settings() ), 'render' ) );
// And before the code is pasted, after a bad one.
( new Triggerpost_Settings() )->update( array( 'connection' => null ) );
set_transient( 'triggerpost_notice_1', array( 'error', Triggerpost_Connection::parse_code( 'nonsense' )->get_error_message() ) );
$unconnected = rp_capture( array( new Triggerpost_Admin( new Triggerpost_Settings() ), 'render' ) );
$css   = '';
foreach ( array( 'wp-includes/css/dashicons.min.css', 'wp-includes/css/buttons.min.css', 'wp-admin/css/common.min.css', 'wp-admin/css/forms.min.css', 'wp-admin/css/admin-menu.min.css', 'wp-admin/css/colors/modern/colors.min.css' ) as $file ) {
	if ( is_file( ABSPATH . $file ) ) {
		$css .= '<link rel="stylesheet" href="file://' . ABSPATH . $file . '">' . "\n";
	}
}
foreach ( array(
	'settings'             => $admin,
	'settings-unconnected' => $unconnected,
) as $name => $html ) {
	file_put_contents(
		$out . "/{$name}.html",
		"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>triggerpost ‹ Shop — WordPress</title>\n{$css}</head>\n<body class=\"wp-admin wp-core-ui\"><div id=\"wpwrap\"><div id=\"wpcontent\" style=\"margin-left:20px\"><div id=\"wpbody\"><div id=\"wpbody-content\">\n{$html}\n</div></div></div></div></body></html>\n"
	);
}

// A product page; the visitor added the shirt on the page before.
rp_fresh_site();
WC()->cart->add_to_cart( 20, 1, 21, array( 'attribute_pa_colour' => 'blue' ) );
Test_Site::$page       = 'product';
Test_Site::$queried_id = 10;
file_put_contents( $out . '/product.html', rp_shop_page( '<main><h1>Stoneware mug</h1><form class="cart"><button type="submit">Add to cart</button></form></main>' ) );

// An add on that page that loads no page (blocks, AJAX buttons): what the
// script is told when it asks (?wc-ajax=triggerpost_state).
WC()->cart->add_to_cart( 10, 2 );
$_SERVER['HTTP_X_TRIGGERPOST'] = '1';
add_filter( 'wp_doing_ajax', '__return_true' );
add_filter( 'wp_die_ajax_handler', static fn() => static function () {} );
file_put_contents( $out . '/state.json', rp_capture( fn() => do_action( 'wc_ajax_triggerpost_state' ) ) );
unset( $_SERVER['HTTP_X_TRIGGERPOST'] );
remove_all_filters( 'wp_doing_ajax' );

// The cart page.
Test_Site::$page = 'cart';
file_put_contents( $out . '/cart.html', rp_shop_page( '<main><h1>Cart</h1></main>' ) );

// The classic checkout, and the block checkout's email input.
Test_Site::$page = 'checkout';
file_put_contents( $out . '/checkout-classic.html', rp_shop_page( '<form class="checkout woocommerce-checkout"><p class="form-row"><label for="billing_email">Email address</label><input type="email" id="billing_email" name="billing_email"></p></form>' ) );
file_put_contents( $out . '/checkout-block.html', rp_shop_page( '<div class="wp-block-woocommerce-checkout wc-block-checkout"><div class="wc-block-components-text-input"><input type="email" id="email" autocomplete="email"><label for="email">Email address</label></div></div>' ) );

// A logged-in customer on any page.
rp_fresh_site();
Test_Site::$user = new WP_User( 42, 'ann@example.com', 'Ann', 'Andersson</script><b>x' );
file_put_contents( $out . '/customer.html', rp_shop_page( '<main><h1>Home</h1></main>' ) );

// A store not connected: the plugin prints nothing.
$GLOBALS['wp_filter'] = array();
Test_Site::reset();
file_put_contents( $out . '/not-connected.html', rp_shop_page( '<main><h1>Home</h1></main>' ) );

echo "rendered into {$out}\n";
