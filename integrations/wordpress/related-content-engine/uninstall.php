<?php
/**
 * Deletes the plugin's settings when it is deleted from Plugins.
 *
 * Cached fragments are transients with a lifetime (at most a day): WordPress deletes them when they expire.
 *
 * @package RelatedContentEngine
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

foreach ( array( 'rce_service_url', 'rce_locale', 'rce_k', 'rce_cache_ttl' ) as $rce_option ) {
	delete_option( $rce_option );
}
