<?php
/**
 * The settings screen: WooCommerce → triggerpost.
 *
 * @package Triggerpost
 */

defined( 'ABSPATH' ) || exit;

/**
 * Paste the connection code, see the connection, open the merchant app.
 *
 * Every action needs manage_woocommerce and its own nonce; the page reads the
 * connection's status from triggerpost with a signed request on each visit.
 */
class Triggerpost_Admin {

	const PAGE       = 'triggerpost';
	const CAPABILITY = 'manage_woocommerce';

	/**
	 * Settings.
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
	 * Attach to wp-admin.
	 *
	 * @return void
	 */
	public function register() {
		add_action( 'admin_menu', array( $this, 'add_page' ), 60 );
		add_action( 'admin_post_triggerpost_save', array( $this, 'on_save' ) );
		add_action( 'admin_post_triggerpost_open', array( $this, 'on_open' ) );
		add_filter( 'plugin_action_links_' . plugin_basename( TRIGGERPOST_FILE ), array( $this, 'action_links' ) );
	}

	/**
	 * The page under WooCommerce.
	 *
	 * @return void
	 */
	public function add_page() {
		add_submenu_page( 'woocommerce', __( 'triggerpost', 'triggerpost' ), __( 'triggerpost', 'triggerpost' ), self::CAPABILITY, self::PAGE, array( $this, 'render' ) );
	}

	/**
	 * "Settings" beside the plugin on the Plugins screen.
	 *
	 * @param array $links Links.
	 * @return array
	 */
	public function action_links( $links ) {
		array_unshift( $links, '<a href="' . esc_url( self::page_url() ) . '">' . esc_html__( 'Settings', 'triggerpost' ) . '</a>' );
		return $links;
	}

	/**
	 * The page's address.
	 *
	 * @return string
	 */
	public static function page_url() {
		return admin_url( 'admin.php?page=' . self::PAGE );
	}

	/**
	 * A message for the next view of the page (this user only).
	 *
	 * @param string $kind    success or error.
	 * @param string $message The words.
	 * @return void
	 */
	private static function notice( $kind, $message ) {
		set_transient( 'triggerpost_notice_' . get_current_user_id(), array( $kind, $message ), 5 * MINUTE_IN_SECONDS );
	}

	/**
	 * Apply the settings form.
	 *
	 * @param array $form The posted fields (unslashed).
	 * @return bool Whether everything was saved.
	 */
	public function save( array $form ) {
		$values = array();
		if ( isset( $form['consent_label'] ) ) {
			$values['consent_label'] = mb_substr( sanitize_text_field( (string) $form['consent_label'] ), 0, 200 );
		}
		if ( ! empty( $form['disconnect'] ) ) {
			$values['connection'] = null;
		}
		$code = trim( (string) ( $form['connection_code'] ?? '' ) );
		if ( '' !== $code ) {
			$connection = Triggerpost_Connection::parse_code( $code );
			if ( is_wp_error( $connection ) ) {
				$this->settings->update( $values );
				self::notice( 'error', $connection->get_error_message() );
				return false;
			}
			$values['connection'] = $connection;
		}
		$this->settings->update( $values );
		self::notice( 'success', __( 'Settings saved.', 'triggerpost' ) );
		return true;
	}

	/**
	 * admin-post.php?action=triggerpost_save.
	 *
	 * @return void
	 */
	public function on_save() {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			wp_die( esc_html__( 'You are not allowed to change these settings.', 'triggerpost' ), 403 );
		}
		check_admin_referer( 'triggerpost_save' );
		$this->save( wp_unslash( $_POST ) ); // phpcs:ignore WordPress.Security.ValidatedSanitizedInput.InputNotSanitized -- each field is sanitised in save().
		wp_safe_redirect( self::page_url() );
		exit;
	}

	/**
	 * Where "Open triggerpost" goes: a fresh single-use login link, or back to
	 * the page with the reason.
	 *
	 * @return string
	 */
	public function open_target() {
		$connection = $this->settings->connection();
		if ( null === $connection ) {
			self::notice( 'error', __( 'Paste the connection code first.', 'triggerpost' ) );
			return self::page_url();
		}
		$url = ( new Triggerpost_Connection( $connection ) )->login_link();
		if ( is_wp_error( $url ) ) {
			self::notice( 'error', $url->get_error_message() );
			return self::page_url();
		}
		return $url;
	}

	/**
	 * admin-post.php?action=triggerpost_open.
	 *
	 * @return void
	 */
	public function on_open() {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			wp_die( esc_html__( 'You are not allowed to open triggerpost.', 'triggerpost' ), 403 );
		}
		check_admin_referer( 'triggerpost_open' );
		// The link is on the triggerpost the connection names (checked in login_link()).
		wp_redirect( $this->open_target() ); // phpcs:ignore WordPress.Security.SafeRedirect.wp_redirect_wp_redirect
		exit;
	}

	/**
	 * The page.
	 *
	 * @return void
	 */
	public function render() {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			return;
		}
		$connection = $this->settings->connection();
		$notice     = get_transient( 'triggerpost_notice_' . get_current_user_id() );
		delete_transient( 'triggerpost_notice_' . get_current_user_id() );
		$all = $this->settings->all();
		?>
		<div class="wrap triggerpost-settings">
			<h1><?php esc_html_e( 'triggerpost', 'triggerpost' ); ?></h1>
			<?php if ( is_array( $notice ) && 2 === count( $notice ) ) : ?>
				<div class="notice notice-<?php echo esc_attr( 'error' === $notice[0] ? 'error' : 'success' ); ?>"><p><?php echo esc_html( $notice[1] ); ?></p></div>
			<?php endif; ?>

			<h2><?php esc_html_e( 'Connection', 'triggerpost' ); ?></h2>
			<?php $this->render_connection( $connection ); ?>

			<h2><?php esc_html_e( 'Settings', 'triggerpost' ); ?></h2>
			<form method="post" action="<?php echo esc_url( admin_url( 'admin-post.php' ) ); ?>">
				<input type="hidden" name="action" value="triggerpost_save">
				<?php wp_nonce_field( 'triggerpost_save' ); ?>
				<table class="form-table" role="presentation">
					<tr>
						<th scope="row"><label for="triggerpost-code"><?php esc_html_e( 'Connection code', 'triggerpost' ); ?></label></th>
						<td>
							<textarea id="triggerpost-code" name="connection_code" rows="3" cols="60" class="large-text code" autocomplete="off" spellcheck="false"></textarea>
							<p class="description"><?php esc_html_e( 'In triggerpost, open Settings → Storefront and copy the connection code. Pasting a new code replaces the old one.', 'triggerpost' ); ?></p>
						</td>
					</tr>
					<tr>
						<th scope="row"><label for="triggerpost-consent-label"><?php esc_html_e( 'Consent checkbox text', 'triggerpost' ); ?></label></th>
						<td>
							<input id="triggerpost-consent-label" name="consent_label" type="text" class="regular-text" maxlength="200" value="<?php echo esc_attr( (string) $all['consent_label'] ); ?>" placeholder="<?php echo esc_attr__( 'Email me news and offers', 'triggerpost' ); ?>">
							<p class="description"><?php esc_html_e( 'Shown, unticked, under the email address on the checkout (classic and block). Ticked, the customer agrees to marketing email.', 'triggerpost' ); ?></p>
						</td>
					</tr>
				</table>
				<p class="submit">
					<?php submit_button( __( 'Save changes', 'triggerpost' ), 'primary', 'submit', false ); ?>
					<?php if ( null !== $connection ) : ?>
						<button type="submit" name="disconnect" value="1" class="button"><?php esc_html_e( 'Disconnect', 'triggerpost' ); ?></button>
					<?php endif; ?>
				</p>
			</form>
		</div>
		<?php
	}

	/**
	 * The connection as triggerpost reports it, and the button to open it.
	 *
	 * @param array|null $connection The stored connection.
	 * @return void
	 */
	private function render_connection( $connection ) {
		if ( null === $connection ) {
			echo '<p>' . esc_html__( 'Not connected: no storefront events are sent until you paste the connection code below.', 'triggerpost' ) . '</p>';
			return;
		}
		$status = ( new Triggerpost_Connection( $connection ) )->status();
		echo '<table class="widefat striped" style="max-width:48em"><tbody>';
		echo '<tr><th scope="row">' . esc_html__( 'triggerpost', 'triggerpost' ) . '</th><td><code>' . esc_html( $connection['url'] ) . '</code></td></tr>';
		echo '<tr><th scope="row">' . esc_html__( 'Storefront key', 'triggerpost' ) . '</th><td><code>' . esc_html( $connection['key'] ) . '</code></td></tr>';
		if ( is_wp_error( $status ) ) {
			echo '<tr><th scope="row">' . esc_html__( 'Status', 'triggerpost' ) . '</th><td><strong>' . esc_html__( 'Not working', 'triggerpost' ) . '</strong>: ' . esc_html( $status->get_error_message() ) . '</td></tr>';
		} else {
			echo '<tr><th scope="row">' . esc_html__( 'Status', 'triggerpost' ) . '</th><td>' . esc_html(
				/* translators: %s: the shop's name at triggerpost */
				sprintf( __( 'Connected as %s', 'triggerpost' ), (string) $status['shop'] )
			) . '</td></tr>';
			echo '<tr><th scope="row">' . esc_html__( 'Storefront events, last 24 hours', 'triggerpost' ) . '</th><td>' . esc_html( number_format_i18n( (int) ( $status['events_last_24h'] ?? 0 ) ) ) . '</td></tr>';
			$last = $status['last_event_at'] ?? null;
			$when = is_string( $last ) && false !== strtotime( $last )
				? wp_date( get_option( 'date_format' ) . ' ' . get_option( 'time_format' ), strtotime( $last ) )
				: __( 'none yet', 'triggerpost' );
			echo '<tr><th scope="row">' . esc_html__( 'Last event', 'triggerpost' ) . '</th><td>' . esc_html( $when ) . '</td></tr>';
		}
		echo '</tbody></table>';
		?>
		<form method="post" action="<?php echo esc_url( admin_url( 'admin-post.php' ) ); ?>" target="_blank" style="margin-top:1em">
			<input type="hidden" name="action" value="triggerpost_open">
			<?php wp_nonce_field( 'triggerpost_open' ); ?>
			<?php submit_button( __( 'Open triggerpost', 'triggerpost' ), 'secondary', 'open', false ); ?>
		</form>
		<?php
	}
}
