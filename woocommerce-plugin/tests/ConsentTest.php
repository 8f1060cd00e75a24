<?php
/**
 * The marketing-consent checkbox, classic and block Checkout.
 *
 * @package Triggerpost
 */

/**
 * Consent tests.
 */
class ConsentTest extends Triggerpost_TestCase {

	private Triggerpost_Consent $consent;

	protected function setUp(): void {
		parent::setUp();
		$this->consent = new Triggerpost_Consent( new Triggerpost_Settings() );
		$this->consent->register();
	}

	/** WooCommerce's default billing fields, as far as they matter here. */
	private function checkout_fields(): array {
		return apply_filters(
			'woocommerce_checkout_fields',
			array(
				'billing'  => array(
					'billing_first_name' => array( 'priority' => 10 ),
					'billing_phone'      => array( 'priority' => 100 ),
					'billing_email'      => array( 'priority' => 110 ),
				),
				'shipping' => array(),
				'order'    => array(),
			)
		);
	}

	public function test_the_classic_checkout_shows_an_unticked_box_right_after_the_email(): void {
		$field = $this->checkout_fields()['billing']['triggerpost_marketing_consent'];
		$this->assertSame( 'checkbox', $field['type'] );
		$this->assertSame( 0, $field['default'] );
		$this->assertFalse( $field['required'] );
		$this->assertSame( 111, $field['priority'] );
		$this->assertSame( 'Email me news and offers', $field['label'] );
	}

	public function test_the_merchant_words_the_box_and_markup_in_them_is_shown_as_text(): void {
		( new Triggerpost_Settings() )->update( array( 'consent_label' => 'Send me <b>deals</b> & "news"' ) );
		$consent = new Triggerpost_Consent( new Triggerpost_Settings() );
		$fields  = $consent->add_classic_field( array( 'billing' => array() ) );
		// woocommerce_form_field() prints a checkbox label as HTML: it must arrive escaped.
		$this->assertSame( 'Send me &lt;b&gt;deals&lt;/b&gt; &amp; &quot;news&quot;', $fields['billing']['triggerpost_marketing_consent']['label'] );
	}

	public function test_a_classic_checkout_with_the_box_ticked_records_yes_on_the_order_and_the_customer(): void {
		$order    = new WC_Order( 7 );
		$customer = new WC_Customer( 3 );
		$data     = array(
			'billing_email'                 => 'ann@example.com',
			'triggerpost_marketing_consent' => 1,
		);

		do_action( 'woocommerce_checkout_update_customer', $customer, $data );
		do_action( 'woocommerce_checkout_create_order', $order, $data );

		$this->assertSame( 'yes', $order->get_meta( '_triggerpost_marketing_consent' ) );
		$this->assertSame( 'yes', $customer->get_meta( '_triggerpost_marketing_consent' ) );
	}

	public function test_a_classic_checkout_left_unticked_records_no(): void {
		$order    = new WC_Order( 7 );
		$customer = new WC_Customer( 3 );
		$data     = array( 'triggerpost_marketing_consent' => 0 );

		do_action( 'woocommerce_checkout_update_customer', $customer, $data );
		do_action( 'woocommerce_checkout_create_order', $order, $data );

		$this->assertSame( 'no', $order->get_meta( '_triggerpost_marketing_consent' ) );
		$this->assertSame( 'no', $customer->get_meta( '_triggerpost_marketing_consent' ) );
	}

	public function test_a_theme_that_drops_the_field_records_no_not_yes(): void {
		$order = new WC_Order( 7 );
		do_action( 'woocommerce_checkout_create_order', $order, array( 'billing_email' => 'ann@example.com' ) );
		$this->assertSame( 'no', $order->get_meta( '_triggerpost_marketing_consent' ) );
	}

	public function test_a_subscribed_customer_leaving_the_box_unticked_later_stays_subscribed(): void {
		$customer = new WC_Customer( 3 );
		$customer->update_meta_data( '_triggerpost_marketing_consent', 'yes' );
		$order = new WC_Order( 8 );

		do_action( 'woocommerce_checkout_update_customer', $customer, array( 'triggerpost_marketing_consent' => 0 ) );
		do_action( 'woocommerce_checkout_create_order', $order, array( 'triggerpost_marketing_consent' => 0 ) );

		$this->assertSame( 'yes', $customer->get_meta( '_triggerpost_marketing_consent' ) );
		$this->assertSame( 'no', $order->get_meta( '_triggerpost_marketing_consent' ), 'the order records this checkout' );
	}

	public function test_a_guest_has_no_customer_record_to_write(): void {
		$guest = new WC_Customer( 0 );
		do_action( 'woocommerce_checkout_update_customer', $guest, array( 'triggerpost_marketing_consent' => 1 ) );
		$this->assertSame( array(), $guest->meta );
	}

	public function test_the_block_checkout_gets_the_box_in_its_contact_section(): void {
		( new Triggerpost_Settings() )->update( array( 'consent_label' => 'Yes, mail me' ) );
		( new Triggerpost_Consent( new Triggerpost_Settings() ) )->register_block_field();

		$this->assertCount( 1, Test_Site::$block_fields );
		$field = Test_Site::$block_fields[0];
		$this->assertSame( 'triggerpost/marketing-consent', $field['id'] );
		$this->assertSame( 'contact', $field['location'] );
		$this->assertSame( 'checkbox', $field['type'] );
		$this->assertFalse( $field['required'] );
		$this->assertSame( 'Yes, mail me', $field['label'] );
	}

	public function test_the_block_field_is_registered_when_woocommerce_initialises(): void {
		do_action( 'woocommerce_init' );
		$this->assertSame( 'triggerpost/marketing-consent', Test_Site::$block_fields[0]['id'] ?? null );
	}

	public function test_a_block_checkout_with_the_box_ticked_records_yes_on_the_order_and_the_customer(): void {
		$order    = new WC_Order( 9 );
		$customer = new WC_Customer( 4 );

		// WooCommerce announces a checkbox's value as a bool, for the order and the customer.
		do_action( 'woocommerce_set_additional_field_value', 'triggerpost/marketing-consent', true, 'other', $order );
		do_action( 'woocommerce_set_additional_field_value', 'triggerpost/marketing-consent', true, 'other', $customer );

		$this->assertSame( 'yes', $order->get_meta( '_triggerpost_marketing_consent' ) );
		$this->assertSame( 'yes', $customer->get_meta( '_triggerpost_marketing_consent' ) );
	}

	public function test_a_block_checkout_left_unticked_records_no(): void {
		$order = new WC_Order( 9 );
		do_action( 'woocommerce_set_additional_field_value', 'triggerpost/marketing-consent', false, 'other', $order );
		$this->assertSame( 'no', $order->get_meta( '_triggerpost_marketing_consent' ) );
	}

	public function test_other_plugins_fields_are_left_alone(): void {
		$order = new WC_Order( 9 );
		do_action( 'woocommerce_set_additional_field_value', 'someone/newsletter', true, 'other', $order );
		$this->assertSame( array(), $order->meta );
	}

	public function test_a_block_order_whose_request_lacked_the_field_still_says_something(): void {
		$order   = new WC_Order( 10 );
		$request = array( 'additional_fields' => array() );
		do_action( 'woocommerce_store_api_checkout_update_order_from_request', $order, $request );
		$this->assertSame( 'no', $order->get_meta( '_triggerpost_marketing_consent' ) );

		$ticked = new WC_Order( 11 );
		do_action( 'woocommerce_store_api_checkout_update_order_from_request', $ticked, array( 'additional_fields' => array( 'triggerpost/marketing-consent' => true ) ) );
		$this->assertSame( 'yes', $ticked->get_meta( '_triggerpost_marketing_consent' ) );
	}

	public function test_the_place_order_fallback_never_overrides_what_the_field_recorded(): void {
		$order = new WC_Order( 12 );
		do_action( 'woocommerce_set_additional_field_value', 'triggerpost/marketing-consent', true, 'other', $order );
		do_action( 'woocommerce_store_api_checkout_update_order_from_request', $order, array() );
		$this->assertSame( 'yes', $order->get_meta( '_triggerpost_marketing_consent' ) );
	}
}
