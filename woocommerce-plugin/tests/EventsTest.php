<?php
/**
 * Storefront events: the data printed for the script, and adds to cart
 * (contract §1-2).
 *
 * @package Triggerpost
 */

/**
 * Events tests.
 */
class EventsTest extends Triggerpost_TestCase {

	private Triggerpost_Carts $carts;
	private Triggerpost_Events $events;

	protected function setUp(): void {
		parent::setUp();
		$this->carts = new Triggerpost_Carts( new Triggerpost_Cart_Store() );
		$this->carts->register();
		$this->events = new Triggerpost_Events( $this->connected_settings(), $this->carts );
		$this->events->register();
		$this->product( 10, 'Mug', '12.5', 0, 501 );
		$this->product( 20, 'Shirt', '25.00' );
		$this->product( 21, 'Shirt - Blue, M', '26', 20 );
	}

	/** The JSON printed in the page footer, decoded. */
	private function printed(): array {
		$html = $this->output_of( fn() => do_action( 'wp_footer' ) );
		$this->assertSame( 1, preg_match( '#^<script type="application/json" id="triggerpost-data">(.*)</script>\n$#s', $html, $match ), $html );
		return json_decode( $match[1], true, 512, JSON_THROW_ON_ERROR );
	}

	private function assert_event_envelope( array $event, string $type ): void {
		$this->assertSame( array( 'id', 'type', 'at', 'data' ), array_keys( $event ) );
		$this->assertMatchesRegularExpression( '/^[A-Za-z0-9_-]{8,64}$/', $event['id'] );
		$this->assertSame( $type, $event['type'] );
		$this->assertMatchesRegularExpression( '/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/', $event['at'] );
		$this->assertEqualsWithDelta( time(), strtotime( $event['at'] ), 5 );
	}

	public function test_a_store_not_yet_connected_loads_no_script_prints_nothing_and_keeps_no_events(): void {
		delete_option( Triggerpost_Settings::OPTION );
		remove_all_actions( 'woocommerce_add_to_cart' );
		remove_all_actions( 'wp_footer' );
		remove_all_actions( 'wp_enqueue_scripts' );
		$events = new Triggerpost_Events( new Triggerpost_Settings(), $this->carts );
		$events->register();
		Test_Site::$page       = 'product';
		Test_Site::$queried_id = 10;

		do_action( 'wp_enqueue_scripts' );
		$html = $this->output_of( fn() => do_action( 'wp_footer' ) );
		WC()->cart->add_to_cart( 10, 1 );

		$this->assertSame( array(), Test_Site::$scripts );
		$this->assertSame( '', $html );
		$this->assertSame( array(), $events->take_pending() );
	}

	public function test_a_connected_store_loads_the_script_deferred_in_the_footer(): void {
		do_action( 'wp_enqueue_scripts' );
		$script = Test_Site::$scripts['triggerpost-storefront'];
		$this->assertStringEndsWith( '/triggerpost/assets/triggerpost.js', $script['src'] );
		$this->assertSame( array(), $script['deps'] );
		$this->assertTrue( $script['args']['in_footer'] );
		$this->assertSame( 'defer', $script['args']['strategy'] );
	}

	public function test_a_product_page_tells_the_script_the_product_as_the_contract_has_it(): void {
		Test_Site::$page       = 'product';
		Test_Site::$queried_id = 10;

		$data = $this->printed();

		$this->assertSame( self::BASE . '/events/woocommerce/' . self::KEY, $data['endpoint'] );
		$this->assertSame( '/?wc-ajax=triggerpost_state', $data['stateUrl'] );
		$this->assertSame( 'product', $data['page'] );
		$this->assertSame(
			array(
				'id'        => '10',
				'title'     => 'Mug',
				'url'       => 'https://shop.example/product/10/',
				'price'     => '12.50',
				'currency'  => 'SEK',
				'image_url' => 'https://shop.example/wp-content/uploads/image-501-woocommerce_thumbnail.jpg',
			),
			$data['product']
		);
		$this->assertNull( $data['cart'] );
		$this->assertNull( $data['customer'] );
	}

	public function test_a_product_without_a_price_has_neither_price_nor_currency(): void {
		$this->product( 30, 'Ask us', '' );
		$product = Triggerpost_Events::product_data( Test_Site::$products[30] );
		$this->assertArrayNotHasKey( 'price', $product );
		$this->assertArrayNotHasKey( 'currency', $product );
	}

	public function test_an_add_to_cart_waits_for_the_next_page_with_the_product_and_quantity(): void {
		WC()->cart->add_to_cart( 20, 2, 21, array( 'attribute_pa_colour' => 'blue' ) );

		$data = $this->printed();

		$this->assertCount( 1, $data['events'] );
		$event = $data['events'][0];
		$this->assert_event_envelope( $event, 'product_added_to_cart' );
		$this->assertSame(
			array(
				'product'  => array(
					'id'         => '20',
					'variant_id' => '21',
					'title'      => 'Shirt - Blue, M',
					'url'        => 'https://shop.example/product/20/',
					'price'      => '26.00',
					'currency'   => 'SEK',
				),
				'quantity' => 2,
			),
			$event['data']
		);
		$this->assertSame( $this->carts->token(), $data['cart']['token'], 'the page gives the script the cart for the add' );
	}

	public function test_a_waiting_event_is_printed_once(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$this->assertCount( 1, $this->printed()['events'] );
		$this->assertSame( array(), $this->printed()['events'] );
	}

	public function test_at_most_20_adds_wait_the_newest_kept(): void {
		for ( $i = 1; $i <= 25; $i++ ) {
			WC()->cart->add_to_cart( 10, $i );
		}
		$events = $this->events->take_pending();
		$this->assertCount( 20, $events );
		$this->assertSame( 25, end( $events )['data']['quantity'] );
	}

	public function test_an_add_that_loads_no_page_is_fetched_by_the_script_with_the_cart(): void {
		WC()->cart->add_to_cart( 10, 1 );
		$_SERVER['HTTP_X_TRIGGERPOST'] = '1';
		add_filter( 'wp_doing_ajax', '__return_true' );
		try {
			$json = $this->output_of(
				function () {
					try {
						do_action( 'wc_ajax_triggerpost_state' );
					} catch ( Test_Died $died ) {
						// wp_send_json() ends the request.
					}
				}
			);
		} finally {
			unset( $_SERVER['HTTP_X_TRIGGERPOST'] );
		}
		$state = json_decode( $json, true );
		$this->assertSame( 'product_added_to_cart', $state['events'][0]['type'] );
		$this->assertSame( $this->carts->token(), $state['cart']['token'] );
		$this->assertSame( array(), $this->events->take_pending(), 'fetched events leave the session' );
	}

	public function test_another_site_cannot_make_a_browser_drain_the_waiting_events(): void {
		WC()->cart->add_to_cart( 10, 1 );
		add_filter( 'wp_doing_ajax', '__return_true' );
		$json = $this->output_of(
			function () {
				try {
					do_action( 'wc_ajax_triggerpost_state' );
				} catch ( Test_Died $died ) {
					// wp_send_json() ends the request.
				}
			}
		);
		$this->assertSame( array( 'error' => 'not available' ), json_decode( $json, true ) );
		$this->assertCount( 1, $this->events->take_pending() );
	}

	public function test_the_cart_page_tells_the_script_the_cart_as_the_contract_has_it(): void {
		WC()->cart->add_to_cart( 10, 2 );
		WC()->cart->add_to_cart( 20, 1, 21, array( 'attribute_pa_colour' => 'blue' ) );
		Test_Site::$page = 'cart';

		$cart = $this->printed()['cart'];

		$this->assertSame(
			array(
				'token'    => $this->carts->token(),
				'items'    => array(
					array(
						'product_id' => '10',
						'title'      => 'Mug',
						'quantity'   => 2,
						'price'      => '12.50',
						'image_url'  => 'https://shop.example/wp-content/uploads/image-501-woocommerce_thumbnail.jpg',
						'url'        => 'https://shop.example/product/10/',
					),
					array(
						'product_id' => '20',
						'variant_id' => '21',
						'title'      => 'Shirt - Blue, M',
						'quantity'   => 1,
						'price'      => '26.00',
						'url'        => 'https://shop.example/product/20/',
					),
				),
				'total'    => '51.00',
				'currency' => 'SEK',
			),
			$cart
		);
	}

	public function test_the_checkout_page_has_the_cart_and_the_order_received_page_is_not_a_checkout(): void {
		WC()->cart->add_to_cart( 10, 1 );
		Test_Site::$page = 'checkout';
		$this->assertSame( 'checkout', $this->printed()['page'] );
		$this->assertNotNull( $this->printed()['cart'] );
		Test_Site::$page = 'order-received';
		$this->assertSame( 'other', $this->printed()['page'] );
	}

	public function test_an_empty_cart_page_has_no_cart(): void {
		Test_Site::$page = 'cart';
		$this->assertNull( $this->printed()['cart'] );
	}

	public function test_a_logged_in_customer_is_named_for_identify_and_on_each_event(): void {
		Test_Site::$user = new WP_User( 42, 'ann@example.com', 'Ann', '' );
		WC()->cart->add_to_cart( 10, 1 );

		$data = $this->printed();

		$customer = array(
			'email'       => 'ann@example.com',
			'customer_id' => '42',
			'first_name'  => 'Ann',
		);
		$this->assertSame( $customer, $data['customer'] );
		$this->assertSame( $customer, $data['events'][0]['data']['customer'] );
	}

	public function test_product_names_and_links_cannot_break_out_of_the_printed_data(): void {
		$this->product( 66, '</script><script>alert("x")</script> & <b>Mug</b>\'s', '1' );
		Test_Site::$page       = 'product';
		Test_Site::$queried_id = 66;

		$html = $this->output_of( fn() => do_action( 'wp_footer' ) );

		$this->assertSame( 1, substr_count( strtolower( $html ), '</script' ) );
		$this->assertSame( 1, substr_count( strtolower( $html ), '<script' ) );
		$this->assertStringNotContainsString( '&', substr( $html, 0, -10 ) );
		$this->assertStringNotContainsString( "'", $html );
		$data = $this->printed();
		$this->assertSame( '& Mug\'s', $data['product']['title'], 'markup (and a script with its content) stripped, the text kept' );
	}

	public function test_a_customer_name_cannot_break_out_of_the_printed_data(): void {
		Test_Site::$user = new WP_User( 5, 'eve@example.com', '</script><img src=x onerror=alert(1)>', "O'Hara & co" );

		$html = $this->output_of( fn() => do_action( 'wp_footer' ) );

		$this->assertSame( 1, substr_count( strtolower( $html ), '</script' ) );
		$this->assertStringNotContainsString( '<img', $html );
		$this->assertSame( '</script><img src=x onerror=alert(1)>', $this->printed()['customer']['first_name'] );
		$this->assertSame( "O'Hara & co", $this->printed()['customer']['last_name'] );
	}

	public function test_a_name_with_entities_is_sent_as_plain_text(): void {
		$this->product( 67, 'Caf&eacute; &amp; Tea &#8211; 1kg', '1' );
		$this->assertSame( 'Café & Tea – 1kg', Triggerpost_Events::product_data( Test_Site::$products[67] )['title'] );
	}

	public function test_times_are_utc_with_milliseconds(): void {
		$this->assertSame( '2026-12-07T10:00:00.250Z', Triggerpost_Events::iso( 1796637600.25 ) );
	}
}
