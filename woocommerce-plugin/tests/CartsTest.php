<?php
/**
 * Cart tokens, snapshots, the recovery link and the token on the order (contract §5).
 *
 * @package Triggerpost
 */

/**
 * Cart tests.
 */
class CartsTest extends Triggerpost_TestCase {

	private Triggerpost_Carts $carts;

	protected function setUp(): void {
		parent::setUp();
		$this->carts = new Triggerpost_Carts( new Triggerpost_Cart_Store() );
		$this->carts->register();
		$this->product( 10, 'Mug', '12.50' );
		$this->product( 20, 'Shirt', '25.00' );
		$this->product( 21, 'Shirt - Blue, M', '26.00', 20 );
	}

	private function stored_rows(): array {
		return $GLOBALS['wpdb']->pdo->query( 'SELECT token, contents, updated_at FROM wp_triggerpost_carts' )->fetchAll( PDO::FETCH_ASSOC );
	}

	public function test_a_cart_gets_one_token_of_32_letters_and_digits_for_its_session(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$token = $this->carts->token();
		$this->assertMatchesRegularExpression( '/^[A-Za-z0-9]{32}$/', $token );
		WC()->cart->add_to_cart( 20, 1 );
		$this->assertSame( $token, $this->carts->token() );
	}

	public function test_a_visitor_without_a_session_has_no_token(): void {
		WC()->session = null;
		$this->assertNull( $this->carts->token() );
	}

	public function test_each_cart_change_is_kept_under_the_token(): void {
		WC()->cart->add_to_cart( 10, 2 );
		WC()->cart->add_to_cart( 20, 1, 21, array( 'attribute_pa_colour' => 'blue' ) );

		$rows = $this->stored_rows();
		$this->assertCount( 1, $rows );
		$this->assertSame( $this->carts->token(), $rows[0]['token'] );
		$this->assertSame(
			array(
				array(
					'product_id'   => 10,
					'variation_id' => 0,
					'quantity'     => 2,
					'variation'    => array(),
				),
				array(
					'product_id'   => 20,
					'variation_id' => 21,
					'quantity'     => 1,
					'variation'    => array( 'attribute_pa_colour' => 'blue' ),
				),
			),
			json_decode( $rows[0]['contents'], true )['items']
		);
	}

	public function test_an_unchanged_cart_is_not_written_again(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$GLOBALS['wpdb']->pdo->exec( "UPDATE wp_triggerpost_carts SET updated_at = '2000-01-01 00:00:00'" );
		do_action( 'woocommerce_cart_updated' );
		$this->assertSame( '2000-01-01 00:00:00', $this->stored_rows()[0]['updated_at'] );
	}

	public function test_the_recovery_link_is_the_shop_home_with_the_token(): void {
		$this->assertSame( 'https://shop.example/?triggerpost_cart=AbC123', Triggerpost_Carts::recovery_url( 'AbC123' ) );
	}

	public function test_a_shopper_following_the_link_on_another_device_gets_the_cart_back_at_the_checkout(): void {
		WC()->cart->add_to_cart( 10, 2 );
		WC()->cart->add_to_cart( 20, 1, 21, array( 'attribute_pa_colour' => 'blue' ) );
		$token = $this->carts->token();

		// Another browser: a new session and an empty cart.
		WC_Stand_In::$instance = new WC_Stand_In();
		$target                = $this->carts->restore( $token );

		$this->assertSame( 'https://shop.example/checkout/', $target );
		$items = array_values( WC()->cart->get_cart() );
		$this->assertSame( array( 10, 20 ), array_column( $items, 'product_id' ) );
		$this->assertSame( array( 2, 1 ), array_column( $items, 'quantity' ) );
		$this->assertSame( 21, $items[1]['variation_id'] );
		$this->assertSame( array( 'attribute_pa_colour' => 'blue' ), $items[1]['variation'] );
		$this->assertSame( $token, $this->carts->token(), 'the restored cart is the same checkout' );
		$this->assertTrue( WC()->session->cookie_set, 'a guest keeps the restored cart' );
	}

	public function test_a_restored_cart_replaces_what_the_browser_held(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$token = $this->carts->token();
		WC_Stand_In::$instance = new WC_Stand_In();
		WC()->cart->add_to_cart( 20, 3 );

		$this->carts->restore( $token );

		$this->assertSame( array( 10 ), array_column( array_values( WC()->cart->get_cart() ), 'product_id' ) );
	}

	public function test_products_deleted_since_are_skipped(): void {
		WC()->cart->add_to_cart( 10, 1 );
		WC()->cart->add_to_cart( 20, 1 );
		$token = $this->carts->token();
		unset( Test_Site::$products[20] );
		WC_Stand_In::$instance = new WC_Stand_In();

		$this->assertSame( 'https://shop.example/checkout/', $this->carts->restore( $token ) );
		$this->assertSame( array( 10 ), array_column( array_values( WC()->cart->get_cart() ), 'product_id' ) );
	}

	public function test_products_no_longer_for_sale_are_skipped_without_an_error_for_the_shopper(): void {
		WC()->cart->add_to_cart( 10, 1 );
		WC()->cart->add_to_cart( 20, 1 );
		$token = $this->carts->token();
		Test_Site::$products[20]->purchasable = false;
		WC_Stand_In::$instance = new WC_Stand_In();

		$this->carts->restore( $token );

		$this->assertSame( array( 10 ), array_column( array_values( WC()->cart->get_cart() ), 'product_id' ) );
		$this->assertSame( array(), Test_Site::$notices );
	}

	public function test_a_cart_of_only_deleted_products_goes_to_the_cart_page(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$token = $this->carts->token();
		unset( Test_Site::$products[10] );
		WC_Stand_In::$instance = new WC_Stand_In();
		$this->assertSame( 'https://shop.example/cart/', $this->carts->restore( $token ) );
	}

	/**
	 * @dataProvider bad_tokens
	 */
	public function test_an_unknown_or_forged_token_changes_nothing( string $token ): void {
		WC()->cart->add_to_cart( 10, 1 );
		$mine = $this->carts->token();

		$this->assertSame( 'https://shop.example/cart/', $this->carts->restore( $token ) );
		$this->assertCount( 1, WC()->cart->get_cart() );
		$this->assertSame( $mine, $this->carts->token() );
	}

	public function bad_tokens(): array {
		return array(
			'unknown'      => array( str_repeat( 'a', 32 ) ),
			'too short'    => array( 'abc' ),
			'sql'          => array( "' OR '1'='1" ),
			'other chars'  => array( str_repeat( 'a', 31 ) . '-' ),
			'empty'        => array( '' ),
		);
	}

	public function test_a_cart_older_than_30_days_is_not_restored_and_is_pruned(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$old = $this->carts->token();
		$GLOBALS['wpdb']->pdo->exec( "UPDATE wp_triggerpost_carts SET updated_at = '" . gmdate( 'Y-m-d H:i:s', time() - 31 * DAY_IN_SECONDS ) . "'" );
		WC_Stand_In::$instance = new WC_Stand_In();
		WC()->cart->add_to_cart( 20, 1 );
		$fresh = $this->carts->token();

		$this->assertSame( 'https://shop.example/cart/', $this->carts->restore( $old ) );
		do_action( Triggerpost_Carts::CRON_HOOK );
		$this->assertSame( array( $fresh ), array_column( $this->stored_rows(), 'token' ) );
	}

	public function test_restoring_a_cart_sends_no_add_to_cart_events(): void {
		$events = new Triggerpost_Events( $this->connected_settings(), $this->carts );
		$events->register();
		WC()->cart->add_to_cart( 10, 1 );
		$token = $this->carts->token();
		WC_Stand_In::$instance = new WC_Stand_In();

		$this->carts->restore( $token );

		$this->assertSame( array(), $events->take_pending() );
	}

	public function test_the_classic_order_carries_the_cart_token(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$order = new WC_Order( 100 );
		do_action( 'woocommerce_checkout_create_order', $order, array() );
		$this->assertSame( $this->carts->token(), $order->get_meta( '_triggerpost_cart_token' ) );
	}

	public function test_the_block_checkout_order_carries_the_cart_token_from_its_draft_on(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$draft = new WC_Order( 101 );
		do_action( 'woocommerce_store_api_checkout_update_order_meta', $draft );
		$this->assertSame( $this->carts->token(), $draft->get_meta( '_triggerpost_cart_token' ) );

		$placed = new WC_Order( 102 );
		do_action( 'woocommerce_store_api_checkout_update_order_from_request', $placed, array() );
		$this->assertSame( $this->carts->token(), $placed->get_meta( '_triggerpost_cart_token' ) );
	}

	public function test_an_order_without_a_cart_session_gets_no_token(): void {
		WC()->session = null;
		$order        = new WC_Order( 103 );
		do_action( 'woocommerce_checkout_create_order', $order, array() );
		$this->assertSame( '', $order->get_meta( '_triggerpost_cart_token' ) );
	}

	public function test_after_the_cart_is_emptied_the_next_cart_is_another_checkout(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$first = $this->carts->token();
		WC()->cart->empty_cart();
		WC()->cart->add_to_cart( 20, 1 );
		$this->assertNotSame( $first, $this->carts->token() );
		$this->assertCount( 2, $this->stored_rows(), 'the first cart stays recoverable' );
	}

	public function test_the_daily_prune_is_scheduled_once_and_unscheduled_on_deactivation(): void {
		$this->assertFalse( wp_next_scheduled( Triggerpost_Carts::CRON_HOOK ) );
		Triggerpost_Carts::schedule_prune();
		$first = wp_next_scheduled( Triggerpost_Carts::CRON_HOOK );
		Triggerpost_Carts::schedule_prune();

		$this->assertIsInt( $first );
		$this->assertSame( $first, wp_next_scheduled( Triggerpost_Carts::CRON_HOOK ) );
		$this->assertSame( 'daily', wp_get_schedule( Triggerpost_Carts::CRON_HOOK ) );
		Triggerpost_Carts::deactivate();
		$this->assertFalse( wp_next_scheduled( Triggerpost_Carts::CRON_HOOK ) );
	}
}
