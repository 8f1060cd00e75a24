<?php
/**
 * The connection code and the signed requests (contract §6).
 *
 * @package Triggerpost
 */

/**
 * Connection tests.
 */
class ConnectionTest extends Triggerpost_TestCase {

	/**
	 * Known-answer vector, shared with triggerpost's side
	 * (connector/plugin.py `signature(secret, body)` gives the same):
	 * secret "Zm9vYmFyX3RyaWdnZXJwb3N0X3BsdWdpbl9zZWNyZXQ" (the 43 characters as
	 * ASCII bytes, not base64-decoded), body
	 * {"key":"pk_abcdefghijklmnopqrstuvwxyz","at":1765101600,"nonce":"n0nce-0123456789abcdef"}
	 * → "68sygoSKifHR4e/5K5glC5b0V+5NcpUsD06CC0KMUEA=".
	 */
	const VECTOR_BODY      = '{"key":"pk_abcdefghijklmnopqrstuvwxyz","at":1765101600,"nonce":"n0nce-0123456789abcdef"}';
	const VECTOR_SIGNATURE = '68sygoSKifHR4e/5K5glC5b0V+5NcpUsD06CC0KMUEA=';

	private function code_of( array $document ): string {
		return rtrim( strtr( base64_encode( json_encode( $document ) ), '+/', '-_' ), '=' );
	}

	private function document( array $changes = array() ): array {
		return array_merge(
			array(
				'v'        => 1,
				'url'      => self::BASE,
				'platform' => 'woocommerce',
				'key'      => self::KEY,
				'secret'   => self::SECRET,
			),
			$changes
		);
	}

	public function test_a_merchant_pasting_the_code_from_triggerpost_is_connected_to_that_triggerpost(): void {
		$connection = Triggerpost_Connection::parse_code( "  \n" . self::CODE . "\n" );
		$this->assertSame(
			array(
				'v'        => 1,
				'url'      => self::BASE,
				'platform' => 'woocommerce',
				'key'      => self::KEY,
				'secret'   => self::SECRET,
			),
			$connection
		);
	}

	public function test_a_trailing_slash_in_the_address_does_not_double_the_paths(): void {
		$connection = Triggerpost_Connection::parse_code( $this->code_of( $this->document( array( 'url' => self::BASE . '/' ) ) ) );
		$this->assertSame( self::BASE, $connection['url'] );
	}

	/**
	 * @dataProvider not_codes
	 */
	public function test_a_merchant_pasting_something_else_is_told_it_is_not_a_connection( string $code, string $error ): void {
		$result = Triggerpost_Connection::parse_code( $code );
		$this->assertInstanceOf( WP_Error::class, $result );
		$this->assertSame( $error, $result->get_error_code() );
		$this->assertNotSame( '', $result->get_error_message() );
	}

	public function not_codes(): array {
		$code = fn( array $changes ) => $this->code_of( $this->document( $changes ) );
		return array(
			'empty'             => array( '', 'triggerpost_code_malformed' ),
			'not base64url'     => array( 'abc$%^', 'triggerpost_code_malformed' ),
			'base64 of text'    => array( rtrim( base64_encode( 'hello' ), '=' ), 'triggerpost_code_malformed' ),
			'oversized'         => array( str_repeat( 'A', 5000 ), 'triggerpost_code_malformed' ),
			'a newer version'   => array( $code( array( 'v' => 2 ) ), 'triggerpost_code_version' ),
			'a Shopify shop'    => array( $code( array( 'platform' => 'shopify' ) ), 'triggerpost_code_platform' ),
			'a bad key'         => array( $code( array( 'key' => 'pk_ABC' ) ), 'triggerpost_code_malformed' ),
			'a short secret'    => array( $code( array( 'secret' => 'short' ) ), 'triggerpost_code_malformed' ),
			'a secret not text' => array( $code( array( 'secret' => array( 1 ) ) ), 'triggerpost_code_malformed' ),
			'plain http'        => array( $code( array( 'url' => 'http://app.triggerpost.example' ) ), 'triggerpost_code_url' ),
			'an address query'  => array( $code( array( 'url' => self::BASE . '/?x=1' ) ), 'triggerpost_code_url' ),
			'a javascript url'  => array( $code( array( 'url' => 'javascript:alert(1)' ) ), 'triggerpost_code_url' ),
		);
	}

	public function test_a_triggerpost_on_this_machine_may_use_plain_http(): void {
		$connection = Triggerpost_Connection::parse_code( $this->code_of( $this->document( array( 'url' => 'http://127.0.0.1:8000' ) ) ) );
		$this->assertSame( 'http://127.0.0.1:8000', $connection['url'] );
	}

	public function test_the_signature_is_the_known_answer_triggerpost_computes(): void {
		$this->assertSame( self::VECTOR_SIGNATURE, Triggerpost_Connection::sign( self::SECRET, self::VECTOR_BODY ) );
	}

	public function test_a_signed_request_has_exactly_the_body_it_signs(): void {
		$client  = new Triggerpost_Connection( Triggerpost_Connection::parse_code( self::CODE ) );
		$request = $client->signed_request( 1765101600, 'n0nce-0123456789abcdef' );
		$this->assertSame( self::VECTOR_BODY, $request['body'] );
		$this->assertSame( self::VECTOR_SIGNATURE, $request['headers']['X-Triggerpost-Signature'] );
	}

	public function test_every_request_has_a_fresh_nonce_and_the_current_time(): void {
		$client = new Triggerpost_Connection( Triggerpost_Connection::parse_code( self::CODE ) );
		$first  = json_decode( $client->signed_request()['body'], true );
		$second = json_decode( $client->signed_request()['body'], true );
		$this->assertNotSame( $first['nonce'], $second['nonce'] );
		$this->assertMatchesRegularExpression( '/^[A-Za-z0-9_-]{16,64}$/', $first['nonce'] );
		$this->assertEqualsWithDelta( time(), $first['at'], 5 );
		$this->assertIsInt( $first['at'] );
		$this->assertSame( self::KEY, $first['key'] );
	}

	public function test_the_status_request_is_signed_and_its_answer_read(): void {
		$this->answers[] = array( 200, '{"shop":"shop.example","connected":true,"events_last_24h":12,"last_event_at":"2026-12-07T10:00:00Z","app_url":"https://app.triggerpost.example/app/"}' );
		$client          = new Triggerpost_Connection( Triggerpost_Connection::parse_code( self::CODE ) );

		$status = $client->status();

		$this->assertSame( 12, $status['events_last_24h'] );
		$this->assertCount( 1, $this->requests );
		$sent = $this->requests[0];
		$this->assertSame( self::BASE . '/plugin/woocommerce/status', $sent['url'] );
		$this->assertSame( 'POST', $sent['args']['method'] );
		$this->assertSame( 0, $sent['args']['redirection'] );
		$expected = base64_encode( hash_hmac( 'sha256', $sent['args']['body'], self::SECRET, true ) );
		$this->assertSame( $expected, $sent['args']['headers']['X-Triggerpost-Signature'] );
	}

	/**
	 * @dataProvider failures
	 */
	public function test_a_refused_or_failed_status_is_a_reason_the_merchant_can_act_on( $answer, string $error ): void {
		$this->answers[] = $answer;
		$client          = new Triggerpost_Connection( Triggerpost_Connection::parse_code( self::CODE ) );
		$status          = $client->status();
		$this->assertInstanceOf( WP_Error::class, $status );
		$this->assertSame( $error, $status->get_error_code() );
	}

	public function failures(): array {
		return array(
			'forged or replayed' => array( array( 401, '{"error":"invalid signature"}' ), 'triggerpost_refused' ),
			'unknown key'        => array( array( 404, '{"error":"unknown key"}' ), 'triggerpost_unknown' ),
			'server error'       => array( array( 502, '<html>bad gateway</html>' ), 'triggerpost_error' ),
			'not json'           => array( array( 200, 'hello' ), 'triggerpost_error' ),
			'another shape'      => array( array( 200, '{"hello":1}' ), 'triggerpost_answer' ),
			'unreachable'        => array( new WP_Error( 'http_request_failed', 'timed out' ), 'triggerpost_unreachable' ),
		);
	}

	public function test_the_login_link_comes_from_a_signed_request(): void {
		$this->answers[] = array( 200, '{"url":"https://app.triggerpost.example/app/login/abc"}' );
		$client          = new Triggerpost_Connection( Triggerpost_Connection::parse_code( self::CODE ) );
		$this->assertSame( 'https://app.triggerpost.example/app/login/abc', $client->login_link() );
		$this->assertSame( self::BASE . '/plugin/woocommerce/login-link', $this->requests[0]['url'] );
		$this->assertArrayHasKey( 'X-Triggerpost-Signature', $this->requests[0]['args']['headers'] );
	}

	public function test_a_login_link_to_another_site_is_never_followed(): void {
		$this->answers[] = array( 200, '{"url":"https://app.triggerpost.example.evil.test/app/login/abc"}' );
		$client          = new Triggerpost_Connection( Triggerpost_Connection::parse_code( self::CODE ) );
		$this->assertInstanceOf( WP_Error::class, $client->login_link() );
	}
}
