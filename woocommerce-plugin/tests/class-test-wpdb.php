<?php
/**
 * wpdb on an in-memory SQLite database: WordPress's own wpdb (prepare,
 * get_row, get_var, placeholders) with only the connection and the escaping
 * of quotes (SQLite doubles them) replaced.
 *
 * @package Triggerpost
 */

/**
 * The test database.
 */
class Test_Wpdb extends wpdb {

	/**
	 * The SQLite connection.
	 *
	 * @var PDO
	 */
	public $pdo;

	/**
	 * Connect to a fresh in-memory database, with the plugin's table.
	 */
	public function __construct() { // phpcs:ignore -- no parent: no MySQL.
		$this->prefix  = 'wp_';
		$this->options = 'wp_options';
		$this->ready  = true;
		$this->pdo    = new PDO( 'sqlite::memory:' );
		$this->pdo->setAttribute( PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION );
		// The table Triggerpost_Cart_Store::install() creates with dbDelta, in SQLite's words.
		$this->pdo->exec( "CREATE TABLE wp_options (option_id INTEGER PRIMARY KEY AUTOINCREMENT, option_name TEXT NOT NULL UNIQUE, option_value TEXT NOT NULL, autoload TEXT NOT NULL DEFAULT 'yes')" );
		$this->create_carts_table();
	}

	/**
	 * The table Triggerpost_Cart_Store::install() creates with dbDelta, in SQLite's words.
	 *
	 * @return void
	 */
	private function create_carts_table() {
		$this->pdo->exec( 'CREATE TABLE IF NOT EXISTS wp_triggerpost_carts (token CHAR(32) NOT NULL PRIMARY KEY, contents TEXT NOT NULL, updated_at DATETIME NOT NULL)' );
	}

	/**
	 * SQLite escapes a quote by doubling it.
	 *
	 * @param string $data The string.
	 * @return string
	 */
	public function _real_escape( $data ) { // phpcs:ignore
		if ( ! is_scalar( $data ) ) {
			return '';
		}
		return $this->add_placeholder_escape( str_replace( "'", "''", (string) $data ) );
	}

	/**
	 * Run a query; results as wpdb keeps them.
	 *
	 * @param string $query SQL.
	 * @return int|false
	 */
	public function query( $query ) { // phpcs:ignore
		$query = $this->remove_placeholder_escape( $query );
		// add_option()'s MySQL upsert, in SQLite's words.
		$query = preg_replace_callback(
			'/ON DUPLICATE KEY UPDATE (.*)$/s',
			static fn( $m ) => 'ON CONFLICT(option_name) DO UPDATE SET ' . preg_replace( '/VALUES\((`?\w+`?)\)/', 'excluded.$1', $m[1] ),
			$query
		);
		$this->last_query = $query;
		$this->flush();
		$statement = $this->pdo->query( $query );
		if ( preg_match( '/^\s*select/i', $query ) ) {
			$this->last_result = $statement->fetchAll( PDO::FETCH_OBJ );
			$this->num_rows    = count( $this->last_result );
			$this->col_info    = null;
			return $this->num_rows;
		}
		$this->rows_affected = $statement->rowCount();
		$this->insert_id     = (int) $this->pdo->lastInsertId();
		return $this->rows_affected;
	}

	/**
	 * Delete every row (between tests).
	 *
	 * @return void
	 */
	public function reset() {
		$this->create_carts_table();
		$this->pdo->exec( 'DELETE FROM wp_triggerpost_carts' );
		$this->pdo->exec( 'DELETE FROM wp_options' );
	}
}
