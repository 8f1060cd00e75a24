<?php
/**
 * The base of every test: a fresh site, WooCommerce session and cart, and
 * only WordPress's own hooks from the bootstrap.
 *
 * @package Triggerpost
 */

use PHPUnit\Framework\TestCase;

/** A redirect: wp_redirect() reached, with the place and status. */
class Test_Redirected extends RuntimeException {
	public function __construct( public string $location, public int $status ) {
		parent::__construct( "redirect to {$location}" );
	}
}

/**
 * Base test case.
 */
abstract class Triggerpost_TestCase extends TestCase {

	/** The connection code of the contract's example shop (see ConnectionTest). */
	const CODE = 'eyJ2IjoxLCJ1cmwiOiJodHRwczovL2FwcC50cmlnZ2VycG9zdC5leGFtcGxlIiwicGxhdGZvcm0iOiJ3b29jb21tZXJjZSIsImtleSI6InBrX2FiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6Iiwic2VjcmV0IjoiWm05dlltRnlYM1J5YVdkblpYSndiM04wWDNCc2RXZHBibDl6WldOeVpYUSJ9';
	const KEY    = 'pk_abcdefghijklmnopqrstuvwxyz';
	const SECRET = 'Zm9vYmFyX3RyaWdnZXJwb3N0X3BsdWdpbl9zZWNyZXQ';
	const BASE   = 'https://app.triggerpost.example';

	/**
	 * Hooks as the bootstrap left them.
	 *
	 * @var array|null
	 */
	private static $baseline_filters = null;

	/**
	 * Outgoing HTTP requests seen by `pre_http_request`.
	 *
	 * @var array
	 */
	protected array $requests = array();

	/**
	 * What the next HTTP requests answer: [status, body] or a WP_Error.
	 *
	 * @var array
	 */
	protected array $answers = array();

	protected function setUp(): void {
		parent::setUp();
		if ( null === self::$baseline_filters ) {
			self::$baseline_filters = $GLOBALS['wp_filter'];
		}
		$GLOBALS['wp_filter'] = array();
		foreach ( self::$baseline_filters as $name => $hook ) {
			$GLOBALS['wp_filter'][ $name ] = clone $hook;
		}
		$GLOBALS['wp_actions'] = array();
		Test_Site::reset();
		$this->requests = array();
		$this->answers  = array();
		// WordPress's HTTP API, stopped at its documented short-circuit.
		add_filter(
			'pre_http_request',
			function ( $pre, $args, $url ) {
				$this->requests[] = array(
					'url'  => $url,
					'args' => $args,
				);
				$answer = array_shift( $this->answers ) ?? array( 500, '' );
				if ( $answer instanceof WP_Error ) {
					return $answer;
				}
				return array(
					'headers'  => array(),
					'body'     => $answer[1],
					'response' => array(
						'code'    => $answer[0],
						'message' => '',
					),
					'cookies'  => array(),
					'filename' => null,
				);
			},
			10,
			3
		);
		add_filter(
			'wp_redirect',
			static function ( $location, $status ) {
				throw new Test_Redirected( $location, $status );
			},
			10,
			2
		);
	}

	/**
	 * A connected store (the example code stored as the admin screen stores it).
	 *
	 * @return Triggerpost_Settings
	 */
	protected function connected_settings(): Triggerpost_Settings {
		$settings = new Triggerpost_Settings();
		$settings->update( array( 'connection' => Triggerpost_Connection::parse_code( self::CODE ) ) );
		return new Triggerpost_Settings();
	}

	/**
	 * A product in the catalogue.
	 */
	protected function product( int $id, string $name, string $price, int $parent_id = 0, int $image_id = 0 ): WC_Product {
		Test_Site::$products[ $id ] = new WC_Product( $id, $name, $price, $parent_id, $image_id );
		return Test_Site::$products[ $id ];
	}

	/**
	 * Output of a callable.
	 */
	protected function output_of( callable $render ): string {
		ob_start();
		try {
			$render();
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}
}
