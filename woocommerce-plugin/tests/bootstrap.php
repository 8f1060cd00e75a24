<?php
/**
 * Test bootstrap: real WordPress core pieces from Debian's `wordpress`
 * package (hooks, escaping and formatting, l10n, WP_Error, nonces and
 * redirects from pluggable.php, links, HTTP API up to its `pre_http_request`
 * filter, wpdb's query building) and stand-ins, in stand-ins.php, for what
 * needs a running site (options, the current user, the database connection)
 * and for every WooCommerce function and class the plugin calls.
 *
 * Nothing here is WooCommerce's own code.
 *
 * @package Triggerpost
 */

$wordpress = getenv( 'WORDPRESS_DIR' ) ? getenv( 'WORDPRESS_DIR' ) : '/usr/share/wordpress';
if ( ! is_file( $wordpress . '/wp-includes/plugin.php' ) ) {
	fwrite( STDERR, "WordPress core not found in {$wordpress} (apt-get install wordpress, or set WORDPRESS_DIR)\n" );
	exit( 1 );
}

if ( ! in_array( 'sqlite', PDO::getAvailableDrivers(), true ) ) {
	fwrite( STDERR, "PHP's SQLite driver is missing (apt-get install php-sqlite3)\n" );
	exit( 1 );
}

define( 'ABSPATH', $wordpress . '/' );
define( 'WPINC', 'wp-includes' );
define( 'WP_CONTENT_DIR', __DIR__ . '/var' );
define( 'WP_PLUGIN_DIR', dirname( __DIR__ ) );
define( 'WPMU_PLUGIN_DIR', __DIR__ . '/var/mu-plugins' );
define( 'WPMU_PLUGIN_URL', 'https://shop.example/wp-content/mu-plugins' );
define( 'WP_CONTENT_URL', 'https://shop.example/wp-content' );
define( 'WP_PLUGIN_URL', 'https://shop.example/wp-content/plugins' );
define( 'WP_DEBUG', true );
define( 'MINUTE_IN_SECONDS', 60 );
define( 'HOUR_IN_SECONDS', 3600 );
define( 'DAY_IN_SECONDS', 86400 );
define( 'WEEK_IN_SECONDS', 604800 );
define( 'MONTH_IN_SECONDS', 2592000 );
define( 'YEAR_IN_SECONDS', 31536000 );
define( 'KB_IN_BYTES', 1024 );
define( 'WP_LANG_DIR', __DIR__ . '/var/languages' );
foreach ( array( 'AUTH', 'SECURE_AUTH', 'LOGGED_IN', 'NONCE' ) as $scheme ) {
	define( "{$scheme}_KEY", "test {$scheme} key, long enough and unique 0123456789" );
	define( "{$scheme}_SALT", "test {$scheme} salt, long enough and unique 0123456789" );
}
$GLOBALS['wp_version'] = '6.1';

// Stand-ins first: pluggable.php and friends define theirs only when absent.
require __DIR__ . '/stand-ins.php';
require __DIR__ . '/features-util.php';

require ABSPATH . WPINC . '/load.php';
require ABSPATH . WPINC . '/class-wp-error.php';
require ABSPATH . WPINC . '/plugin.php';
require ABSPATH . WPINC . '/formatting.php';
require ABSPATH . WPINC . '/kses.php';
require ABSPATH . WPINC . '/functions.php';
require ABSPATH . WPINC . '/pomo/translations.php';
require ABSPATH . WPINC . '/pomo/mo.php';
require ABSPATH . WPINC . '/class-wp-textdomain-registry.php';
require ABSPATH . WPINC . '/l10n.php';
require ABSPATH . WPINC . '/pluggable.php';
require ABSPATH . WPINC . '/link-template.php';
require ABSPATH . WPINC . '/http.php';
require ABSPATH . WPINC . '/class-wp-http.php';
require ABSPATH . WPINC . '/cron.php';
require ABSPATH . WPINC . '/class-wpdb.php';
require ABSPATH . WPINC . '/cache.php';

$GLOBALS['wp_textdomain_registry'] = new WP_Textdomain_Registry();
$GLOBALS['wp_plugin_paths']        = array();

require __DIR__ . '/class-test-wpdb.php';
$GLOBALS['wpdb'] = new Test_Wpdb();
wp_cache_init();

// wp_die() during a test: an exception the test can expect, not an exit.
add_filter(
	'wp_die_handler',
	static fn() => static function ( $message, $title = '', $args = array() ) {
		throw new Test_Died( is_string( $message ) ? $message : 'died', (int) ( $args['response'] ?? 500 ) );
	}
);
add_filter( 'wp_die_ajax_handler', static fn() => apply_filters( 'wp_die_handler', null ) );
add_filter( 'wp_die_json_handler', static fn() => apply_filters( 'wp_die_handler', null ) );

require dirname( __DIR__ ) . '/triggerpost/triggerpost.php';
if ( class_exists( PHPUnit\Framework\TestCase::class ) ) {
	require __DIR__ . '/class-triggerpost-testcase.php';
}
