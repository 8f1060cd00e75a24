<?php
/**
 * The marketing-consent checkbox on the classic and the block Checkout.
 *
 * @package Triggerpost
 */

defined( 'ABSPATH' ) || exit;

/**
 * Writes what the customer chose to `_triggerpost_marketing_consent` ("yes" or
 * "no") on the order and on the customer: the meta triggerpost's consent rule
 * reads by default, so a store with this plugin needs no setting changed.
 *
 * The box is never ticked in advance. The order always records the choice made
 * at that checkout; the customer's record only ever moves to "yes" from a
 * ticked box, and gets "no" only when it held nothing: leaving a box unticked
 * once is not the same as unsubscribing, which the customer does from an email.
 */
class Triggerpost_Consent {

	const META_KEY = '_triggerpost_marketing_consent';

	/** The classic checkout's field name (posted as such). */
	const CLASSIC_FIELD = 'triggerpost_marketing_consent';

	/** The block checkout's field id: namespace/name, as the API requires. */
	const BLOCK_FIELD = 'triggerpost/marketing-consent';

	/**
	 * Settings (for the label).
	 *
	 * @var Triggerpost_Settings
	 */
	private $settings;

	/**
	 * Constructor.
	 *
	 * @param Triggerpost_Settings $settings Settings.
	 */
	public function __construct( Triggerpost_Settings $settings ) {
		$this->settings = $settings;
	}

	/**
	 * Attach to WooCommerce.
	 *
	 * @return void
	 */
	public function register() {
		add_filter( 'woocommerce_checkout_fields', array( $this, 'add_classic_field' ) );
		add_action( 'woocommerce_checkout_create_order', array( $this, 'save_classic_order' ), 10, 2 );
		add_action( 'woocommerce_checkout_update_customer', array( $this, 'save_classic_customer' ), 10, 2 );
		add_action( 'woocommerce_init', array( $this, 'register_block_field' ) );
		add_action( 'woocommerce_set_additional_field_value', array( $this, 'copy_block_value' ), 10, 4 );
		add_action( 'woocommerce_store_api_checkout_update_order_from_request', array( $this, 'complete_block_order' ), 10, 2 );
	}

	/**
	 * Classic checkout: a checkbox right after the billing email.
	 *
	 * @param array $fields Checkout fields by fieldset.
	 * @return array
	 */
	public function add_classic_field( $fields ) {
		$priority = (int) ( $fields['billing']['billing_email']['priority'] ?? 110 );

		$fields['billing'][ self::CLASSIC_FIELD ] = array(
			'type'     => 'checkbox',
			'label'    => esc_html( $this->settings->consent_label() ),
			'required' => false,
			'default'  => 0,
			'class'    => array( 'form-row-wide', 'triggerpost-consent' ),
			'priority' => $priority + 1,
		);
		return $fields;
	}

	/**
	 * Classic checkout: the order records the choice.
	 *
	 * WooCommerce's posted data has a checkbox field as 1 or 0; without it (a
	 * theme that drops the field) the box was not ticked.
	 *
	 * @param WC_Order $order The order being created (saved after this hook).
	 * @param array    $data  The posted checkout data.
	 * @return void
	 */
	public function save_classic_order( $order, $data ) {
		$order->update_meta_data( self::META_KEY, self::ticked( $data[ self::CLASSIC_FIELD ] ?? null ) ? 'yes' : 'no' );
	}

	/**
	 * Classic checkout: the customer account (logged in or created at checkout).
	 *
	 * @param WC_Customer $customer The customer (saved after this hook).
	 * @param array       $data     The posted checkout data.
	 * @return void
	 */
	public function save_classic_customer( $customer, $data ) {
		self::record_on_customer( $customer, self::ticked( $data[ self::CLASSIC_FIELD ] ?? null ) );
	}

	/**
	 * Block checkout: the same checkbox in the contact section, through
	 * WooCommerce's additional checkout fields API (WooCommerce 8.9+).
	 *
	 * @return void
	 */
	public function register_block_field() {
		if ( ! function_exists( 'woocommerce_register_additional_checkout_field' ) ) {
			return;
		}
		woocommerce_register_additional_checkout_field(
			array(
				'id'                         => self::BLOCK_FIELD,
				'label'                      => $this->settings->consent_label(),
				'location'                   => 'contact',
				'type'                       => 'checkbox',
				'required'                   => false,
				'show_in_order_confirmation' => false,
			)
		);
	}

	/**
	 * Block checkout: WooCommerce stores the field under its own key
	 * (`_wc_other/triggerpost/marketing-consent`, "1"/"0") and announces each
	 * value with `woocommerce_set_additional_field_value`, for the order and,
	 * as a contact field, for the customer. Copy it to our key on the same object
	 * (WooCommerce saves that object afterwards).
	 *
	 * @param string $key       The field id.
	 * @param mixed  $value     The value (a bool for a checkbox).
	 * @param string $group     billing, shipping or other.
	 * @param object $wc_object WC_Order or WC_Customer.
	 * @return void
	 */
	public function copy_block_value( $key, $value, $group, $wc_object ) {
		if ( self::BLOCK_FIELD !== $key || ! is_object( $wc_object ) ) {
			return;
		}
		if ( $wc_object instanceof WC_Order ) {
			$wc_object->update_meta_data( self::META_KEY, self::ticked( $value ) ? 'yes' : 'no' );
		} elseif ( $wc_object instanceof WC_Customer ) {
			self::record_on_customer( $wc_object, self::ticked( $value ) );
		}
	}

	/**
	 * Block checkout, "Place order": an order whose request carried no value
	 * for the field (an older checkout, a field removed) records "no", so every
	 * order says something.
	 *
	 * @param WC_Order        $order   The order (saved after this hook).
	 * @param WP_REST_Request $request The Store API request.
	 * @return void
	 */
	public function complete_block_order( $order, $request ) {
		if ( '' === (string) $order->get_meta( self::META_KEY ) ) {
			$fields = $request['additional_fields'] ?? array();
			$value  = is_array( $fields ) ? ( $fields[ self::BLOCK_FIELD ] ?? null ) : null;
			$order->update_meta_data( self::META_KEY, self::ticked( $value ) ? 'yes' : 'no' );
		}
	}

	/**
	 * A ticked box: "yes"; otherwise "no" only over nothing.
	 *
	 * @param WC_Customer $customer The customer.
	 * @param bool        $ticked   Whether the box was ticked.
	 * @return void
	 */
	private static function record_on_customer( $customer, $ticked ) {
		if ( ! $customer || ! $customer->get_id() ) {
			return; // A guest: the order holds the choice.
		}
		if ( $ticked ) {
			$customer->update_meta_data( self::META_KEY, 'yes' );
		} elseif ( '' === (string) $customer->get_meta( self::META_KEY ) ) {
			$customer->update_meta_data( self::META_KEY, 'no' );
		}
	}

	/**
	 * Whether a posted or stored checkbox value means ticked.
	 *
	 * @param mixed $value 1, "1", true, "on", "yes" ...
	 * @return bool
	 */
	private static function ticked( $value ) {
		if ( is_bool( $value ) ) {
			return $value;
		}
		return in_array( strtolower( trim( (string) $value ) ), array( '1', 'yes', 'on', 'true' ), true );
	}
}
