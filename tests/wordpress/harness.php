<?php
/**
 * Runs the WordPress plugin integrations/wordpress/related-content-engine under php-cli, for tests/test_wordpress.py.
 *
 * The functions below stand in for WordPress, each as WordPress behaves (hooks, options, transients with their
 * expiry, shortcode_atts, block.json attribute defaults); they are not stubs of the plugin, whose code runs
 * unchanged. wp_remote_get really talks HTTP (PHP's http stream wrapper), so the plugin fetches from the real
 * service. Options, transients, the current post and a log of the HTTP requests live in a JSON file (env
 * RCE_WP_STATE), so that one process sees what an earlier one cached.
 *
 *   php harness.php fetch ID [ARGS_JSON]        prints rce_fetch_related_html( ID, ARGS )
 *   php harness.php shortcode [ATTS_JSON]       prints the [related_content] shortcode's output
 *   php harness.php block [ATTRIBUTES_JSON]     prints the related-content-engine/related block's output
 *   php harness.php sanitize VALUES_JSON        prints the registered settings' sanitize_callback results (JSON)
 *   php harness.php uninstall                   runs uninstall.php
 *
 * Env: RCE_WP_STATE (required), RCE_WP_LOCALE (determine_locale(), default en_US), RCE_WP_CONSTANTS (a JSON
 * object of constants to define first, as wp-config.php would: WP_DEBUG, RCE_SERVICE_URL, ...).
 * Any PHP warning, notice or deprecation ends the run with exit code 3 (and says why on stderr).
 */

error_reporting( E_ALL );
ini_set( 'display_errors', 'stderr' );
set_error_handler(
	function ( $number, $message, $file, $line ) {
		fwrite( STDERR, "harness: PHP error $number: $message at $file:$line\n" );
		exit( 3 );
	}
);

define( 'ABSPATH', __DIR__ . '/' );
define( 'DAY_IN_SECONDS', 86400 );
define( 'RCE_HARNESS_PLUGIN', dirname( __DIR__, 2 ) . '/integrations/wordpress/related-content-engine' );

foreach ( json_decode( getenv( 'RCE_WP_CONSTANTS' ) ?: '{}', true ) as $rce_name => $rce_value ) {
	define( $rce_name, $rce_value );
}

/*
 * The site's state, in a JSON file.
 */

function rce_harness_state_path() {
	$path = getenv( 'RCE_WP_STATE' );
	if ( ! $path ) {
		fwrite( STDERR, "harness: set RCE_WP_STATE to a JSON file\n" );
		exit( 2 );
	}
	return $path;
}

function rce_harness_load() {
	$path = rce_harness_state_path();
	$state = is_file( $path ) ? json_decode( file_get_contents( $path ), true ) : array();
	return array_merge(
		array(
			'options'    => array(),
			'transients' => array(),
			'requests'   => array(),
			'post'       => null,
		),
		is_array( $state ) ? $state : array()
	);
}

function rce_harness_save( array $state ) {
	// Maps stay JSON objects when empty.
	$state['options']    = (object) $state['options'];
	$state['transients'] = (object) $state['transients'];
	$json = json_encode( $state, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE );
	file_put_contents( rce_harness_state_path(), $json, LOCK_EX );
}

/*
 * Hooks.
 */

$GLOBALS['rce_harness_hooks'] = array();

function add_action( $hook, $callback, $priority = 10, $accepted_args = 1 ) {
	$GLOBALS['rce_harness_hooks'][ $hook ][] = array( $callback, $accepted_args );
	return true;
}

function add_filter( $hook, $callback, $priority = 10, $accepted_args = 1 ) {
	return add_action( $hook, $callback, $priority, $accepted_args );
}

function do_action( $hook, ...$args ) {
	foreach ( isset( $GLOBALS['rce_harness_hooks'][ $hook ] ) ? $GLOBALS['rce_harness_hooks'][ $hook ] : array() as $entry ) {
		call_user_func_array( $entry[0], array_slice( $args, 0, $entry[1] ) );
	}
}

/*
 * Options and transients.
 */

function get_option( $name, $default_value = false ) {
	$state = rce_harness_load();
	return array_key_exists( $name, $state['options'] ) ? $state['options'][ $name ] : $default_value;
}

function delete_option( $name ) {
	$state = rce_harness_load();
	$found = array_key_exists( $name, $state['options'] );
	unset( $state['options'][ $name ] );
	rce_harness_save( $state );
	return $found;
}

/** As WordPress: false when absent or expired; an expiration of 0 never expires. */
function get_transient( $name ) {
	$state = rce_harness_load();
	if ( ! isset( $state['transients'][ $name ] ) ) {
		return false;
	}
	$entry = $state['transients'][ $name ];
	if ( $entry['expires'] && $entry['expires'] < time() ) {
		return false;
	}
	return $entry['value'];
}

function set_transient( $name, $value, $expiration = 0 ) {
	$state = rce_harness_load();
	$state['transients'][ $name ] = array(
		'value'   => $value,
		'expires' => $expiration ? time() + (int) $expiration : 0,
		'ttl'     => (int) $expiration,
	);
	rce_harness_save( $state );
	return true;
}

/*
 * HTTP, for real, through PHP's http stream wrapper.
 */

class WP_Error {
	private $code;
	private $message;

	public function __construct( $code = '', $message = '' ) {
		$this->code    = $code;
		$this->message = $message;
	}

	public function get_error_code() {
		return $this->code;
	}

	public function get_error_message() {
		return $this->message;
	}
}

function is_wp_error( $thing ) {
	return $thing instanceof WP_Error;
}

function wp_remote_get( $url, $args = array() ) {
	$args    = array_merge(
		array(
			'timeout'     => 5,
			'redirection' => 5,
			'headers'     => array(),
		),
		$args
	);
	$headers = array( 'Connection: close', 'User-Agent: WordPress/harness' );
	foreach ( $args['headers'] as $name => $value ) {
		$headers[] = "$name: $value";
	}
	$context = stream_context_create(
		array(
			'http' => array(
				'method'          => 'GET',
				'header'          => implode( "\r\n", $headers ),
				'timeout'         => (float) $args['timeout'],
				'ignore_errors'   => true,
				'follow_location' => $args['redirection'] > 0 ? 1 : 0,
				'max_redirects'   => max( 1, (int) $args['redirection'] ),
			),
		)
	);
	$error = 'unknown error';
	set_error_handler(
		function ( $number, $message ) use ( &$error ) {
			$error = $message;
			return true;
		}
	);
	$started = microtime( true );
	$body    = file_get_contents( $url, false, $context );
	restore_error_handler();
	$lines = function_exists( 'http_get_last_response_headers' )
		? http_get_last_response_headers()
		: ( isset( $http_response_header ) ? $http_response_header : array() );

	$status = 0;
	$response_headers = array();
	foreach ( (array) $lines as $line ) {
		if ( preg_match( '#^HTTP/\S+\s+(\d{3})#', $line, $match ) ) {
			$status           = (int) $match[1];
			$response_headers = array();
		} elseif ( false !== strpos( $line, ':' ) ) {
			list( $name, $value ) = explode( ':', $line, 2 );
			$response_headers[ strtolower( trim( $name ) ) ] = trim( $value );
		}
	}
	$state               = rce_harness_load();
	$state['requests'][] = array(
		'url'     => $url,
		'status'  => false === $body ? null : $status,
		'error'   => false === $body ? $error : null,
		'seconds' => round( microtime( true ) - $started, 3 ),
	);
	rce_harness_save( $state );
	if ( false === $body ) {
		return new WP_Error( 'http_request_failed', $error );
	}
	return array(
		'headers'  => $response_headers,
		'body'     => $body,
		'response' => array(
			'code'    => $status,
			'message' => '',
		),
		'cookies'  => array(),
		'filename' => null,
	);
}

function wp_remote_retrieve_response_code( $response ) {
	if ( is_wp_error( $response ) || ! isset( $response['response'] ) || ! is_array( $response['response'] ) ) {
		return '';
	}
	return $response['response']['code'];
}

function wp_remote_retrieve_body( $response ) {
	if ( is_wp_error( $response ) || ! isset( $response['body'] ) ) {
		return '';
	}
	return $response['body'];
}

/*
 * Locale, posts, shortcodes, blocks, settings, i18n.
 */

function determine_locale() {
	return getenv( 'RCE_WP_LOCALE' ) ?: 'en_US';
}

function get_locale() {
	return determine_locale();
}

/** The current post is the state's "post" ({ID, post_name, meta}); get_post(null) returns it. */
function get_post( $post = null ) {
	$current = rce_harness_load()['post'];
	if ( ! $current ) {
		return null;
	}
	if ( null === $post || (int) $post === (int) $current['ID'] ) {
		return (object) array(
			'ID'        => (int) $current['ID'],
			'post_name' => (string) $current['post_name'],
		);
	}
	return null;
}

function get_post_meta( $post_id, $key = '', $single = false ) {
	$current = rce_harness_load()['post'];
	$meta    = ( $current && (int) $current['ID'] === (int) $post_id && isset( $current['meta'] ) ) ? $current['meta'] : array();
	if ( ! array_key_exists( $key, $meta ) ) {
		return $single ? '' : array();
	}
	return $single ? $meta[ $key ] : array( $meta[ $key ] );
}

$GLOBALS['rce_harness_shortcodes'] = array();

function add_shortcode( $tag, $callback ) {
	$GLOBALS['rce_harness_shortcodes'][ $tag ] = $callback;
}

function shortcode_atts( $pairs, $atts, $shortcode = '' ) {
	$atts = (array) $atts;
	$out  = array();
	foreach ( $pairs as $name => $default ) {
		$out[ $name ] = array_key_exists( $name, $atts ) ? $atts[ $name ] : $default;
	}
	return $out;
}

$GLOBALS['rce_harness_blocks'] = array();

/** As WordPress given a folder: reads its block.json, whose "name" names the block type. */
function register_block_type( $block_type, $args = array() ) {
	$metadata = json_decode( file_get_contents( rtrim( $block_type, '/' ) . '/block.json' ), true );
	$GLOBALS['rce_harness_blocks'][ $metadata['name'] ] = array_merge( $metadata, $args );
	return (object) array( 'name' => $metadata['name'] );
}

$GLOBALS['rce_harness_rendering'] = null;

function get_block_wrapper_attributes( $extra = array() ) {
	$name = $GLOBALS['rce_harness_rendering'];
	return 'class="wp-block-' . str_replace( '/', '-', preg_replace( '#^core/#', '', $name ) ) . '"';
}

$GLOBALS['rce_harness_settings'] = array();
$GLOBALS['rce_harness_settings_errors'] = array();

function register_setting( $group, $name, $args = array() ) {
	$GLOBALS['rce_harness_settings'][ $name ] = array_merge( array( 'group' => $group ), $args );
}

function add_settings_section( ...$args ) {
}

function add_settings_field( ...$args ) {
}

function add_settings_error( $setting, $code, $message, $type = 'error' ) {
	$GLOBALS['rce_harness_settings_errors'][] = compact( 'setting', 'code', 'message', 'type' );
}

function __( $text, $domain = 'default' ) {
	return $text;
}

/*
 * The commands.
 */

$rce_command = isset( $argv[1] ) ? $argv[1] : '';
if ( 'uninstall' === $rce_command ) {
	// As WordPress: uninstall.php runs on its own, the plugin not loaded.
	define( 'WP_UNINSTALL_PLUGIN', 'related-content-engine/related-content-engine.php' );
	require RCE_HARNESS_PLUGIN . '/uninstall.php';
	exit( 0 );
}

require RCE_HARNESS_PLUGIN . '/related-content-engine.php';
do_action( 'plugins_loaded' );
do_action( 'init' );

$rce_input = isset( $argv[2] ) ? $argv[2] : '{}';
switch ( $rce_command ) {
	case 'fetch':
		echo rce_fetch_related_html( $argv[2], json_decode( isset( $argv[3] ) ? $argv[3] : '{}', true ) );
		break;
	case 'shortcode':
		echo call_user_func( $GLOBALS['rce_harness_shortcodes']['related_content'], json_decode( $rce_input, true ) );
		break;
	case 'block':
		$rce_block = $GLOBALS['rce_harness_blocks']['related-content-engine/related'];
		// As WP_Block: the block.json defaults fill the attributes the editor left out.
		$rce_attributes = json_decode( $rce_input, true );
		foreach ( $rce_block['attributes'] as $rce_name => $rce_spec ) {
			if ( ! array_key_exists( $rce_name, $rce_attributes ) && array_key_exists( 'default', $rce_spec ) ) {
				$rce_attributes[ $rce_name ] = $rce_spec['default'];
			}
		}
		$rce_post                         = get_post();
		$rce_instance                     = (object) array(
			'name'    => 'related-content-engine/related',
			'context' => $rce_post ? array( 'postId' => $rce_post->ID ) : array(),
		);
		$GLOBALS['rce_harness_rendering'] = $rce_instance->name;
		echo call_user_func( $rce_block['render_callback'], $rce_attributes, '', $rce_instance );
		break;
	case 'sanitize':
		do_action( 'admin_init' );
		$rce_out = array( 'values' => array() );
		foreach ( json_decode( $rce_input, true ) as $rce_name => $rce_value ) {
			$rce_setting                  = $GLOBALS['rce_harness_settings'][ $rce_name ];
			$rce_out['values'][ $rce_name ] = call_user_func( $rce_setting['sanitize_callback'], $rce_value );
		}
		$rce_out['settings'] = $GLOBALS['rce_harness_settings'];
		$rce_out['errors']   = $GLOBALS['rce_harness_settings_errors'];
		echo json_encode( $rce_out, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE );
		break;
	default:
		fwrite( STDERR, "harness: unknown command '$rce_command'\n" );
		exit( 2 );
}
