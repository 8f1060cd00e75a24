<?php
/**
 * The settings screen under WooCommerce (contract §6 from the merchant's side).
 *
 * @package Triggerpost
 */

/**
 * Admin tests.
 */
class AdminTest extends Triggerpost_TestCase {

	private Triggerpost_Admin $admin;

	protected function setUp(): void {
		parent::setUp();
		Test_Site::$user = new WP_User( 1, 'owner@shop.example', 'Olle', 'Owner' );
		Test_Site::$caps = array( 'manage_woocommerce' );
		$this->admin     = new Triggerpost_Admin( new Triggerpost_Settings() );
		$this->admin->register();
	}

	/** A form post as wp-admin receives it (slashed, with the nonce field). */
	private function post( string $action, array $fields, ?string $nonce = null ): void {
		$fields['_wpnonce'] = $nonce ?? wp_create_nonce( $action );
		$_POST              = wp_slash( $fields );
		$_REQUEST           = $_POST;
	}

	private function stored(): array {
		return ( new Triggerpost_Settings() )->all();
	}

	public function test_the_page_is_under_woocommerce_for_shop_managers(): void {
		do_action( 'admin_menu' );
		$page = Test_Site::$menu_pages[0];
		$this->assertSame( 'woocommerce', $page['parent'] );
		$this->assertSame( 'manage_woocommerce', $page['capability'] );
		$this->assertSame( 'triggerpost', $page['slug'] );
	}

	public function test_a_merchant_pasting_the_code_is_connected(): void {
		$this->post(
			'triggerpost_save',
			array(
				'connection_code' => self::CODE,
				'consent_label'   => 'Keep me posted',
			)
		);
		try {
			do_action( 'admin_post_triggerpost_save' );
			$this->fail( 'no redirect' );
		} catch ( Test_Redirected $redirect ) {
			$this->assertSame( 'https://shop.example/wp-admin/admin.php?page=triggerpost', $redirect->location );
		}
		$this->assertSame( self::KEY, $this->stored()['connection']['key'] );
		$this->assertSame( 'Keep me posted', $this->stored()['consent_label'] );
		$this->assertSame( array( 'success', 'Settings saved.' ), get_transient( 'triggerpost_notice_1' ) );
	}

	public function test_a_label_with_quotes_is_stored_as_typed_and_markup_is_removed(): void {
		$this->admin->save( wp_unslash( wp_slash( array( 'consent_label' => 'Yes, O\'Reilly\'s <i>news</i>' ) ) ) );
		$this->assertSame( 'Yes, O\'Reilly\'s news', $this->stored()['consent_label'] );
	}

	public function test_a_bad_code_keeps_the_working_connection_and_says_why(): void {
		$this->admin->save( array( 'connection_code' => self::CODE ) );
		$this->assertFalse( $this->admin->save( array( 'connection_code' => 'not-a-code' ) ) );
		$this->assertSame( self::KEY, $this->stored()['connection']['key'] );
		$notice = get_transient( 'triggerpost_notice_1' );
		$this->assertSame( 'error', $notice[0] );
		$this->assertStringContainsString( 'not a triggerpost connection code', $notice[1] );
	}

	public function test_a_merchant_can_disconnect(): void {
		$this->admin->save( array( 'connection_code' => self::CODE ) );
		$this->admin->save( array( 'disconnect' => '1' ) );
		$this->assertNull( ( new Triggerpost_Settings() )->connection() );
	}

	public function test_a_user_who_may_not_manage_the_shop_cannot_change_it(): void {
		Test_Site::$caps = array();
		$this->post( 'triggerpost_save', array( 'connection_code' => self::CODE ) );
		try {
			do_action( 'admin_post_triggerpost_save' );
			$this->fail( 'not refused' );
		} catch ( Test_Died $died ) {
			$this->assertSame( 403, $died->getCode() );
		}
		$this->assertNull( $this->stored()['connection'] );
	}

	public function test_a_forged_form_from_another_site_is_refused(): void {
		$this->post( 'triggerpost_save', array( 'connection_code' => self::CODE ), 'forged0000' );
		try {
			do_action( 'admin_post_triggerpost_save' );
			$this->fail( 'not refused' );
		} catch ( Test_Died $died ) {
			$this->assertSame( 403, $died->getCode() );
		}
		$this->assertNull( $this->stored()['connection'] );
	}

	public function test_a_nonce_for_another_action_is_refused(): void {
		$this->post( 'triggerpost_save', array( 'connection_code' => self::CODE ), wp_create_nonce( 'triggerpost_open' ) );
		$this->expectException( Test_Died::class );
		do_action( 'admin_post_triggerpost_save' );
	}

	public function test_the_page_shows_a_store_not_connected_with_a_protected_form(): void {
		$html = $this->output_of( array( $this->admin, 'render' ) );
		$this->assertStringContainsString( 'Not connected', $html );
		$this->assertStringContainsString( 'name="action" value="triggerpost_save"', $html );
		$this->assertMatchesRegularExpression( '/name="_wpnonce" value="([0-9a-f]{10})"/', $html );
		preg_match( '/name="_wpnonce" value="([0-9a-f]{10})"/', $html, $nonce );
		$this->assertSame( 1, wp_verify_nonce( $nonce[1], 'triggerpost_save' ) );
		$this->assertStringNotContainsString( 'triggerpost_open', $html );
		$this->assertSame( 0, count( $this->requests ), 'no call without a connection' );
	}

	public function test_the_page_shows_the_connection_as_triggerpost_reports_it(): void {
		$this->admin->save( array( 'connection_code' => self::CODE ) );
		$this->answers[] = array( 200, '{"shop":"<script>x</script>shop.example","connected":true,"events_last_24h":1234,"last_event_at":"2026-12-07T10:00:00Z","app_url":"https://app.triggerpost.example/app/"}' );
		$admin           = new Triggerpost_Admin( new Triggerpost_Settings() );

		$html = $this->output_of( array( $admin, 'render' ) );

		$this->assertSame( self::BASE . '/plugin/woocommerce/status', $this->requests[0]['url'] );
		$this->assertStringContainsString( 'Connected as &lt;script&gt;x&lt;/script&gt;shop.example', $html );
		$this->assertStringNotContainsString( '<script>', $html );
		$this->assertStringContainsString( '1,234', $html );
		$this->assertStringContainsString( '2026-12-07 10:00', $html );
		$this->assertStringContainsString( 'value="triggerpost_open"', $html );
		$this->assertStringContainsString( self::KEY, $html );
		$this->assertStringNotContainsString( self::SECRET, $html, 'the secret is never shown' );
	}

	public function test_a_connection_triggerpost_refuses_is_shown_as_not_working_with_the_reason(): void {
		$this->admin->save( array( 'connection_code' => self::CODE ) );
		$this->answers[] = array( 401, '{"error":"invalid signature"}' );
		$html            = $this->output_of( array( new Triggerpost_Admin( new Triggerpost_Settings() ), 'render' ) );
		$this->assertStringContainsString( 'Not working', $html );
		$this->assertStringContainsString( 'paste a new connection code', $html );
	}

	public function test_open_triggerpost_goes_to_a_fresh_login_link(): void {
		$this->admin->save( array( 'connection_code' => self::CODE ) );
		$this->answers[] = array( 200, '{"url":"https://app.triggerpost.example/app/login/tok123"}' );
		$this->post( 'triggerpost_open', array() );
		$admin = new Triggerpost_Admin( new Triggerpost_Settings() );
		try {
			$admin->on_open();
			$this->fail( 'no redirect' );
		} catch ( Test_Redirected $redirect ) {
			$this->assertSame( 'https://app.triggerpost.example/app/login/tok123', $redirect->location );
		}
		$this->assertSame( self::BASE . '/plugin/woocommerce/login-link', $this->requests[0]['url'] );
	}

	public function test_open_triggerpost_without_a_connection_comes_back_with_the_reason(): void {
		$this->assertSame( 'https://shop.example/wp-admin/admin.php?page=triggerpost', $this->admin->open_target() );
		$this->assertSame( 'error', get_transient( 'triggerpost_notice_1' )[0] );
	}

	public function test_open_triggerpost_needs_the_shop_managers_nonce(): void {
		$this->admin->save( array( 'connection_code' => self::CODE ) );
		$this->post( 'triggerpost_open', array(), 'forged0000' );
		$this->expectException( Test_Died::class );
		try {
			$this->admin->on_open();
		} finally {
			$this->assertSame( array(), $this->requests, 'no login link asked for' );
		}
	}

	public function test_a_notice_is_shown_once_and_escaped(): void {
		set_transient( 'triggerpost_notice_1', array( 'error', 'Bad <b>code</b>' ) );
		$first  = $this->output_of( array( $this->admin, 'render' ) );
		$second = $this->output_of( array( $this->admin, 'render' ) );
		$this->assertStringContainsString( 'notice-error"><p>Bad &lt;b&gt;code&lt;/b&gt;</p>', $first );
		$this->assertStringNotContainsString( 'notice-error', $second );
	}

	public function test_the_page_shows_nothing_to_a_user_without_the_capability(): void {
		Test_Site::$caps = array();
		$this->assertSame( '', $this->output_of( array( $this->admin, 'render' ) ) );
	}
}
