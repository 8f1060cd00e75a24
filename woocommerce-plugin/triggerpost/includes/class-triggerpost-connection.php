<?php
/**
 * The connection code the merchant pastes, and the signed requests to triggerpost.
 *
 * @package Triggerpost
 */

defined( 'ABSPATH' ) || exit;

/**
 * Server-to-server calls from the store to triggerpost.
 *
 * A request's body is JSON `{"key", "at", "nonce"}`; its signature, in
 * `X-Triggerpost-Signature`, is base64 of HMAC-SHA256 over those exact bytes
 * with the plugin secret (the 43 characters as they are, not decoded).
 * triggerpost refuses a request more than 300 s off its clock or with a nonce
 * it has seen, so a captured request cannot be replayed.
 */
class Triggerpost_Connection {

	/** Public storefront key: `pk_` and 26 lowercase base32 characters. */
	const KEY_PATTERN = '/^pk_[a-z2-7]{26}$/';

	/** Plugin secret: 43 characters of base64url (256 bits). */
	const SECRET_PATTERN = '/^[A-Za-z0-9_-]{43}$/';

	/** Seconds a status or login-link request may take before the page gives up. */
	const TIMEOUT = 8;

	/**
	 * The connection a code describes, or why it is not one.
	 *
	 * @param string $code What the merchant pasted (spaces and line breaks ignored).
	 * @return array|WP_Error {v, url, platform, key, secret} with url without trailing slash.
	 */
	public static function parse_code( $code ) {
		$code = preg_replace( '/\s+/', '', (string) $code );
		if ( '' === $code || strlen( $code ) > 2048 || ! preg_match( '/^[A-Za-z0-9_-]+$/', $code ) ) {
			return new WP_Error( 'triggerpost_code_malformed', __( 'This is not a triggerpost connection code. Copy it again from Settings → Storefront in triggerpost.', 'triggerpost' ) );
		}
		$json     = base64_decode( strtr( $code, '-_', '+/' ), true );
		$document = false === $json ? null : json_decode( $json, true );
		if ( ! is_array( $document ) ) {
			return new WP_Error( 'triggerpost_code_malformed', __( 'This is not a triggerpost connection code. Copy it again from Settings → Storefront in triggerpost.', 'triggerpost' ) );
		}
		if ( 1 !== ( $document['v'] ?? null ) ) {
			return new WP_Error( 'triggerpost_code_version', __( 'This connection code comes from a newer triggerpost: update the plugin.', 'triggerpost' ) );
		}
		if ( 'woocommerce' !== ( $document['platform'] ?? null ) ) {
			return new WP_Error( 'triggerpost_code_platform', __( 'This connection code is for another kind of shop, not WooCommerce.', 'triggerpost' ) );
		}
		$key    = $document['key'] ?? null;
		$secret = $document['secret'] ?? null;
		if ( ! is_string( $key ) || ! preg_match( self::KEY_PATTERN, $key ) || ! is_string( $secret ) || ! preg_match( self::SECRET_PATTERN, $secret ) ) {
			return new WP_Error( 'triggerpost_code_malformed', __( 'This connection code is incomplete. Copy it again from Settings → Storefront in triggerpost.', 'triggerpost' ) );
		}
		$url = self::clean_url( $document['url'] ?? null );
		if ( null === $url ) {
			return new WP_Error( 'triggerpost_code_url', __( 'The triggerpost address in this code must use https.', 'triggerpost' ) );
		}
		return array(
			'v'        => 1,
			'url'      => $url,
			'platform' => 'woocommerce',
			'key'      => $key,
			'secret'   => $secret,
		);
	}

	/**
	 * An https base URL without query, fragment, user or trailing slash (http
	 * only for a triggerpost on this machine, for development).
	 *
	 * @param mixed $url The code's url.
	 * @return string|null
	 */
	private static function clean_url( $url ) {
		if ( ! is_string( $url ) || strlen( $url ) > 500 ) {
			return null;
		}
		$parts = wp_parse_url( $url );
		if ( ! is_array( $parts ) || empty( $parts['host'] ) || isset( $parts['query'] ) || isset( $parts['fragment'] ) || isset( $parts['user'] ) ) {
			return null;
		}
		$scheme = strtolower( $parts['scheme'] ?? '' );
		$local  = in_array( strtolower( $parts['host'] ), array( 'localhost', '127.0.0.1', '[::1]' ), true );
		if ( 'https' !== $scheme && ! ( 'http' === $scheme && $local ) ) {
			return null;
		}
		return rtrim( $url, '/' );
	}

	/**
	 * The connection this client speaks for.
	 *
	 * @var array
	 */
	private $connection;

	/**
	 * Constructor.
	 *
	 * @param array $connection A parsed connection (parse_code).
	 */
	public function __construct( array $connection ) {
		$this->connection = $connection;
	}

	/**
	 * The signature of a body, as triggerpost computes it.
	 *
	 * @param string $secret The plugin secret.
	 * @param string $body   The exact request body.
	 * @return string base64 of HMAC-SHA256.
	 */
	public static function sign( $secret, $body ) {
		return base64_encode( hash_hmac( 'sha256', $body, $secret, true ) ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode -- the documented signature encoding.
	}

	/**
	 * The body and headers of a signed request, at this time with a fresh nonce.
	 *
	 * @param int|null    $at    Unix seconds (now when null).
	 * @param string|null $nonce 16-64 characters of [A-Za-z0-9_-] (random when null).
	 * @return array{body: string, headers: array}
	 */
	public function signed_request( $at = null, $nonce = null ) {
		$body = wp_json_encode(
			array(
				'key'   => $this->connection['key'],
				'at'    => null === $at ? time() : (int) $at,
				'nonce' => null === $nonce ? self::nonce() : $nonce,
			)
		);
		return array(
			'body'    => $body,
			'headers' => array(
				'Content-Type'            => 'application/json',
				'X-Triggerpost-Signature' => self::sign( $this->connection['secret'], $body ),
			),
		);
	}

	/**
	 * 32 random characters of [A-Za-z0-9].
	 *
	 * @return string
	 */
	private static function nonce() {
		return wp_generate_password( 32, false, false );
	}

	/**
	 * The connection as triggerpost sees it.
	 *
	 * @return array|WP_Error {shop, connected, events_last_24h, last_event_at, app_url}.
	 */
	public function status() {
		$answer = $this->post( 'status' );
		if ( is_wp_error( $answer ) ) {
			return $answer;
		}
		if ( ! isset( $answer['shop'], $answer['connected'] ) ) {
			return new WP_Error( 'triggerpost_answer', __( 'triggerpost gave an answer this plugin does not understand.', 'triggerpost' ) );
		}
		return $answer;
	}

	/**
	 * A single-use login link to the merchant app (valid 15 minutes).
	 *
	 * @return string|WP_Error
	 */
	public function login_link() {
		$answer = $this->post( 'login-link' );
		if ( is_wp_error( $answer ) ) {
			return $answer;
		}
		$url = $answer['url'] ?? null;
		// Only ever send the merchant to the triggerpost the code names.
		if ( ! is_string( $url ) || ! str_starts_with( $url, $this->connection['url'] . '/' ) ) {
			return new WP_Error( 'triggerpost_answer', __( 'triggerpost gave an answer this plugin does not understand.', 'triggerpost' ) );
		}
		return $url;
	}

	/**
	 * POST a signed request to /plugin/woocommerce/<action>.
	 *
	 * @param string $action status or login-link.
	 * @return array|WP_Error The decoded JSON answer.
	 */
	private function post( $action ) {
		$request  = $this->signed_request();
		$response = wp_remote_post(
			$this->connection['url'] . '/plugin/' . $this->connection['platform'] . '/' . $action,
			array(
				'body'        => $request['body'],
				'headers'     => $request['headers'],
				'timeout'     => self::TIMEOUT,
				'redirection' => 0,
			)
		);
		if ( is_wp_error( $response ) ) {
			return new WP_Error(
				'triggerpost_unreachable',
				/* translators: %s: the error from the HTTP request */
				sprintf( __( 'triggerpost could not be reached: %s', 'triggerpost' ), $response->get_error_message() )
			);
		}
		$code   = (int) wp_remote_retrieve_response_code( $response );
		$answer = json_decode( (string) wp_remote_retrieve_body( $response ), true );
		if ( 401 === $code ) {
			return new WP_Error( 'triggerpost_refused', __( 'triggerpost refused this store\'s signature: paste a new connection code (and check the server clock).', 'triggerpost' ) );
		}
		if ( 404 === $code ) {
			return new WP_Error( 'triggerpost_unknown', __( 'triggerpost does not know this connection code: it may have been replaced or the shop removed.', 'triggerpost' ) );
		}
		if ( 200 !== $code || ! is_array( $answer ) ) {
			return new WP_Error(
				'triggerpost_error',
				/* translators: %d: HTTP status code */
				sprintf( __( 'triggerpost answered with an error (HTTP %d). Try again in a moment.', 'triggerpost' ), $code )
			);
		}
		return $answer;
	}
}
