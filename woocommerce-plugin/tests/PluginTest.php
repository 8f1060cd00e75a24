<?php
/**
 * The plugin as WordPress and WooCommerce load it.
 *
 * @package Triggerpost
 */

/**
 * Plugin tests.
 */
class PluginTest extends Triggerpost_TestCase {

	public function test_the_plugin_header_states_its_requirements(): void {
		$header = get_file_data(
			TRIGGERPOST_FILE,
			array(
				'name'     => 'Plugin Name',
				'php'      => 'Requires PHP',
				'wp'       => 'Requires at least',
				'wc'       => 'WC requires at least',
				'domain'   => 'Text Domain',
				'requires' => 'Requires Plugins',
			)
		);
		$this->assertSame( 'triggerpost for WooCommerce', $header['name'] );
		$this->assertSame( '8.1', $header['php'] );
		$this->assertNotSame( '', $header['wp'] );
		$this->assertSame( '8.9', $header['wc'] );
		$this->assertSame( 'triggerpost', $header['domain'] );
		$this->assertSame( 'woocommerce', $header['requires'] );
	}

	public function test_it_declares_compatibility_with_order_tables_and_the_block_checkout(): void {
		$this->assertSame( array(), Test_Site::$declared );
		do_action( 'before_woocommerce_init' );
		$this->assertSame( array( TRIGGERPOST_FILE, true ), Test_Site::$declared['custom_order_tables'] );
		$this->assertSame( array( TRIGGERPOST_FILE, true ), Test_Site::$declared['cart_checkout_blocks'] );
	}

	public function test_once_loaded_the_checkout_carts_and_events_are_hooked(): void {
		do_action( 'plugins_loaded' );
		foreach ( array(
			'woocommerce_checkout_fields',
			'woocommerce_checkout_create_order',
			'woocommerce_checkout_update_customer',
			'woocommerce_init',
			'woocommerce_set_additional_field_value',
			'woocommerce_store_api_checkout_update_order_from_request',
			'woocommerce_store_api_checkout_update_order_meta',
			'woocommerce_cart_updated',
			'woocommerce_cart_emptied',
			'woocommerce_add_to_cart',
			'wp_loaded',
			'wp_footer',
			'wp_enqueue_scripts',
			'wc_ajax_triggerpost_state',
			'triggerpost_prune_carts',
		) as $hook ) {
			$this->assertTrue( has_action( $hook ), "{$hook} is hooked" );
		}
		$this->assertFalse( has_action( 'admin_menu' ), 'the admin screen loads only in wp-admin' );
	}

	public function test_activation_and_deactivation_hooks_are_registered(): void {
		$file = plugin_basename( TRIGGERPOST_FILE );
		$this->assertTrue( has_action( 'activate_' . $file ) );
		$this->assertTrue( has_action( 'deactivate_' . $file ) );
	}

	/**
	 * @runInSeparateProcess
	 * @preserveGlobalState disabled
	 */
	public function test_uninstalling_removes_settings_snapshots_and_the_prune_but_not_order_records(): void {
		( new Triggerpost_Settings() )->update( array( 'connection' => Triggerpost_Connection::parse_code( self::CODE ) ) );
		( new Triggerpost_Cart_Store() )->save( str_repeat( 'a', 32 ), array(), time() );
		Triggerpost_Carts::schedule_prune();

		define( 'WP_UNINSTALL_PLUGIN', plugin_basename( TRIGGERPOST_FILE ) );
		require dirname( TRIGGERPOST_FILE ) . '/uninstall.php';

		$this->assertFalse( get_option( Triggerpost_Settings::OPTION ) );
		$this->assertFalse( wp_next_scheduled( Triggerpost_Carts::CRON_HOOK ) );
		$tables = $GLOBALS['wpdb']->pdo->query( "SELECT name FROM sqlite_master WHERE type = 'table'" )->fetchAll( PDO::FETCH_COLUMN );
		$this->assertNotContains( 'wp_triggerpost_carts', $tables );
		$this->assertContains( 'wp_options', $tables );
	}
}
