<?php
/**
 * The plugin's settings: the connection to triggerpost and the consent label.
 *
 * @package Triggerpost
 */

defined( 'ABSPATH' ) || exit;

/**
 * One option, `triggerpost_settings`, read once per request.
 *
 * The connection holds the plugin secret: the option is not autoloaded so it is
 * not read on every page of the store, only where the plugin needs it.
 */
class Triggerpost_Settings {

	const OPTION = 'triggerpost_settings';

	/**
	 * The stored values, or null before the first read.
	 *
	 * @var array|null
	 */
	private $values = null;

	/**
	 * All values with their defaults.
	 *
	 * @return array{connection: array|null, consent_label: string}
	 */
	public function all() {
		if ( null === $this->values ) {
			$stored       = get_option( self::OPTION, array() );
			$this->values = array_merge(
				array(
					'connection'    => null,
					'consent_label' => '',
				),
				is_array( $stored ) ? $stored : array()
			);
		}
		return $this->values;
	}

	/**
	 * The parsed connection (see Triggerpost_Connection::parse_code), or null.
	 *
	 * @return array|null
	 */
	public function connection() {
		$connection = $this->all()['connection'];
		return is_array( $connection ) ? $connection : null;
	}

	/**
	 * The checkbox label: the merchant's own words, or the translated default.
	 *
	 * @return string
	 */
	public function consent_label() {
		$label = trim( (string) $this->all()['consent_label'] );
		return '' !== $label ? $label : __( 'Email me news and offers', 'triggerpost' );
	}

	/**
	 * The storefront events endpoint, or null when the store is not connected.
	 *
	 * @return string|null
	 */
	public function events_endpoint() {
		$connection = $this->connection();
		if ( null === $connection ) {
			return null;
		}
		return $connection['url'] . '/events/' . $connection['platform'] . '/' . $connection['key'];
	}

	/**
	 * Store new values (merged over the current ones).
	 *
	 * @param array $values Keys of all() to change.
	 * @return void
	 */
	public function update( array $values ) {
		$this->values = array_merge( $this->all(), $values );
		update_option( self::OPTION, $this->values, false );
	}
}
