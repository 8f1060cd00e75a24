<?php
/**
 * Uninstall: the plugin's option, cart snapshots and scheduled prune go.
 *
 * Order and customer meta (`_triggerpost_marketing_consent`,
 * `_triggerpost_cart_token`) stay: they are the store's record of what
 * customers agreed to, and of which cart an order came from.
 *
 * @package Triggerpost
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

global $wpdb;

delete_option( 'triggerpost_settings' );
wp_clear_scheduled_hook( 'triggerpost_prune_carts' );
$wpdb->query( "DROP TABLE IF EXISTS {$wpdb->prefix}triggerpost_carts" ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery, WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- our own table, name from the prefix.
