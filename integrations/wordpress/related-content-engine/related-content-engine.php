<?php
/**
 * Plugin Name:       Related Content Engine
 * Description:       Shows the Related Content Engine's server-rendered "related content" block: a shortcode, [related_content], and a block, "Related content".
 * Version:           0.1.0
 * Requires at least: 6.3
 * Requires PHP:      7.4
 * License:           GPL-2.0-or-later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       related-content-engine
 *
 * The service renders and escapes the block (GET {service}/v1/publications/{id}/related.html); this plugin only
 * fetches it on the server, caches it in a transient, and prints it. Nothing is loaded in the reader's browser.
 *
 * @package RelatedContentEngine
 */

defined( 'ABSPATH' ) || exit;

/** The block's languages, as the service names them. */
const RCE_LOCALES = array( 'en', 'fr', 'ar' );

/** The service's bounds on the number of items. */
const RCE_MAX_K = 100;

// Seconds a request to the service may take: a page is never held up longer (wp-config.php may define it).
defined( 'RCE_TIMEOUT' ) || define( 'RCE_TIMEOUT', 2 );

// Seconds a failed fetch is remembered (at most the cache TTL), so a down service costs one wait, not one per page.
defined( 'RCE_FAILURE_TTL' ) || define( 'RCE_FAILURE_TTL', 60 );

/** Prefix of the transients holding fragments (the rest is an md5 of the URL). */
const RCE_TRANSIENT_PREFIX = 'rce_html_';

/**
 * The settings, their defaults, and the wp-config.php constants that override them (the constant wins).
 *
 * @return array<string, array{default: mixed, constant: string}>
 */
function rce_settings_spec() {
	return array(
		'rce_service_url' => array(
			'default'  => '',
			'constant' => 'RCE_SERVICE_URL',
		),
		'rce_locale'      => array(
			'default'  => 'auto',
			'constant' => 'RCE_LOCALE',
		),
		'rce_k'           => array(
			'default'  => 5,
			'constant' => 'RCE_K',
		),
		'rce_cache_ttl'   => array(
			'default'  => 300,
			'constant' => 'RCE_CACHE_TTL',
		),
	);
}

/**
 * A setting's raw value: its wp-config.php constant when defined, else its option, else its default.
 *
 * @param string $name One of the keys of rce_settings_spec().
 * @return mixed
 */
function rce_setting( $name ) {
	$spec = rce_settings_spec()[ $name ];
	if ( defined( $spec['constant'] ) ) {
		return constant( $spec['constant'] );
	}
	return get_option( $name, $spec['default'] );
}

/**
 * True when a setting is fixed by a constant in wp-config.php (its field is then read-only).
 *
 * @param string $name One of the keys of rce_settings_spec().
 * @return bool
 */
function rce_setting_is_fixed( $name ) {
	return defined( rce_settings_spec()[ $name ]['constant'] );
}

/**
 * An http(s) URL without its trailing slash, or '' when the value is not one.
 *
 * @param mixed $value A URL.
 * @return string
 */
function rce_clean_service_url( $value ) {
	$url = trim( (string) $value );
	if ( '' === $url || false === filter_var( $url, FILTER_VALIDATE_URL ) ) {
		return '';
	}
	$scheme = strtolower( (string) parse_url( $url, PHP_URL_SCHEME ) ); // phpcs:ignore WordPress.WP.AlternativeFunctions.parse_url_parse_url
	if ( ! in_array( $scheme, array( 'http', 'https' ), true ) || null !== parse_url( $url, PHP_URL_QUERY ) ) { // phpcs:ignore WordPress.WP.AlternativeFunctions.parse_url_parse_url
		return '';
	}
	return rtrim( $url, '/' );
}

/**
 * The default locale setting: 'auto' (the WordPress locale of the request) or one of RCE_LOCALES.
 *
 * @param mixed $value A locale setting.
 * @return string
 */
function rce_clean_locale_setting( $value ) {
	$value = strtolower( trim( (string) $value ) );
	return in_array( $value, RCE_LOCALES, true ) ? $value : 'auto';
}

/**
 * A number of items between 1 and RCE_MAX_K; $fallback when the value is not a number.
 *
 * @param mixed $value    A number of items.
 * @param int   $fallback Used when $value is not numeric.
 * @return int
 */
function rce_clean_k( $value, $fallback = 5 ) {
	if ( ! is_numeric( $value ) ) {
		return $fallback;
	}
	return max( 1, min( RCE_MAX_K, (int) $value ) );
}

/**
 * A cache lifetime in seconds, 0 (no cache) to one day.
 *
 * @param mixed $value Seconds.
 * @return int
 */
function rce_clean_cache_ttl( $value ) {
	if ( ! is_numeric( $value ) ) {
		return 300;
	}
	return max( 0, min( DAY_IN_SECONDS, (int) $value ) );
}

/**
 * The service's base URL ('' when none is configured).
 *
 * @return string
 */
function rce_service_url() {
	return rce_clean_service_url( rce_setting( 'rce_service_url' ) );
}

/**
 * The block's language for a WordPress locale: "fr_FR", "fr_CA" → fr; "ar", "ary" (Moroccan Arabic) → ar; else en.
 *
 * @param string $wp_locale A WordPress locale such as "fr_FR".
 * @return string
 */
function rce_locale_from_wp( $wp_locale ) {
	$language = strtolower( (string) preg_replace( '/[_-].*$/', '', (string) $wp_locale ) );
	if ( 'fr' === $language ) {
		return 'fr';
	}
	if ( in_array( $language, array( 'ar', 'ary', 'arq', 'arz' ), true ) ) {
		return 'ar';
	}
	return 'en';
}

/**
 * The block's language: the one asked for when it is en, fr or ar; else the default locale setting; else the
 * request's WordPress locale (so a multilingual site gets each page's language).
 *
 * @param mixed $requested A locale given to the shortcode or the block, or ''.
 * @return string
 */
function rce_resolve_locale( $requested ) {
	$requested = strtolower( trim( (string) $requested ) );
	if ( in_array( $requested, RCE_LOCALES, true ) ) {
		return $requested;
	}
	$setting = rce_clean_locale_setting( rce_setting( 'rce_locale' ) );
	if ( 'auto' !== $setting ) {
		return $setting;
	}
	return rce_locale_from_wp( function_exists( 'determine_locale' ) ? determine_locale() : get_locale() );
}

/**
 * The fragment's URL for a publication, or '' when no service is configured.
 *
 * @param string $publication_id The publication's id in the service's catalog.
 * @param array  $args           locale (en|fr|ar), k, heading_level (2 to 6), thumbnails (bool).
 * @return string
 */
function rce_related_url( $publication_id, array $args = array() ) {
	$base = rce_service_url();
	if ( '' === $base ) {
		return '';
	}
	$default_k = rce_clean_k( rce_setting( 'rce_k' ) );
	$level     = isset( $args['heading_level'] ) && is_numeric( $args['heading_level'] ) ? (int) $args['heading_level'] : 2;
	$query     = array(
		'locale'        => rce_resolve_locale( isset( $args['locale'] ) ? $args['locale'] : '' ),
		'k'             => isset( $args['k'] ) && '' !== $args['k'] ? rce_clean_k( $args['k'], $default_k ) : $default_k,
		'heading_level' => max( 2, min( 6, $level ) ),
		'thumbnails'    => ! empty( $args['thumbnails'] ) && filter_var( $args['thumbnails'], FILTER_VALIDATE_BOOLEAN ) ? 'true' : 'false',
	);
	// rawurlencode: an id holding "/", "?", "&" or "#" stays one path segment.
	return $base . '/v1/publications/' . rawurlencode( $publication_id ) . '/related.html?'
		. http_build_query( $query, '', '&', PHP_QUERY_RFC3986 );
}

/**
 * Logs a failure, only when WP_DEBUG is on.
 *
 * @param string $message What went wrong.
 */
function rce_debug_log( $message ) {
	if ( defined( 'WP_DEBUG' ) && WP_DEBUG ) {
		error_log( 'Related Content Engine: ' . $message ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log
	}
}

/**
 * The service's related block for a publication, as HTML, or '' on any failure (no service configured, service
 * down or slow, unknown id, unexpected answer). Never prints, never throws.
 *
 * The fragment is cached in a transient keyed by its URL for the cache TTL setting (0: no cache); a failure is
 * cached too, for at most RCE_FAILURE_TTL seconds, so a down service delays one page, not every page.
 *
 * @param string $publication_id The publication's id in the service's catalog.
 * @param array  $args           locale (en|fr|ar; default: the settings, else the WordPress locale), k,
 *                               heading_level (2 to 6), thumbnails (bool).
 * @return string
 */
function rce_fetch_related_html( string $publication_id, array $args = array() ): string {
	if ( '' === trim( $publication_id ) ) {
		return '';
	}
	$url = rce_related_url( $publication_id, $args );
	if ( '' === $url ) {
		rce_debug_log( 'no service URL: set it in Settings > Related content, or define RCE_SERVICE_URL' );
		return '';
	}
	$ttl = rce_clean_cache_ttl( rce_setting( 'rce_cache_ttl' ) );
	$key = RCE_TRANSIENT_PREFIX . md5( $url );
	if ( $ttl > 0 ) {
		$cached = get_transient( $key );
		if ( is_array( $cached ) && isset( $cached['html'] ) && is_string( $cached['html'] ) ) {
			return $cached['html'];
		}
	}

	$html  = '';
	$error = '';
	$response = wp_remote_get(
		$url,
		array(
			'timeout'     => RCE_TIMEOUT,
			'redirection' => 0,
			'headers'     => array( 'Accept' => 'text/html' ),
		)
	);
	if ( is_wp_error( $response ) ) {
		$error = $response->get_error_message();
	} else {
		$status = (int) wp_remote_retrieve_response_code( $response );
		$body   = trim( (string) wp_remote_retrieve_body( $response ) );
		if ( 200 !== $status ) {
			$error = 'HTTP ' . $status;
		} elseif ( 0 !== strpos( $body, '<section class="rce-related"' ) ) {
			// Defence in depth: print only what the service's template writes.
			$error = '' === $body ? 'empty answer' : 'not a related-content fragment';
		} else {
			$html = $body;
		}
	}

	if ( '' !== $error ) {
		rce_debug_log( sprintf( '%s for %s', $error, $url ) );
	}
	if ( $ttl > 0 ) {
		set_transient( $key, array( 'html' => $html ), '' === $error ? $ttl : min( RCE_FAILURE_TTL, $ttl ) );
	}
	return $html;
}

/**
 * The publication id of a post: its rce_publication_id meta field, else its slug ('' without a post).
 *
 * @param int|WP_Post|null $post A post, or null for the current one.
 * @return string
 */
function rce_post_publication_id( $post = null ) {
	$post = get_post( $post );
	if ( ! $post ) {
		return '';
	}
	$meta = get_post_meta( $post->ID, 'rce_publication_id', true );
	if ( is_string( $meta ) && '' !== trim( $meta ) ) {
		return trim( $meta );
	}
	return (string) $post->post_name;
}

/**
 * The [related_content] shortcode: [related_content id="…" locale="en|fr|ar" k="5" heading_level="2" thumbnails="true"].
 * Every attribute is optional: the id defaults to the post's rce_publication_id meta field, else its slug.
 *
 * @param array|string $atts The shortcode's attributes.
 * @return string
 */
function rce_shortcode( $atts ) {
	$atts = shortcode_atts(
		array(
			'id'            => '',
			'locale'        => '',
			'k'             => '',
			'heading_level' => 2,
			'thumbnails'    => 'false',
		),
		$atts,
		'related_content'
	);
	$id = '' !== trim( (string) $atts['id'] ) ? trim( (string) $atts['id'] ) : rce_post_publication_id();
	if ( '' === $id ) {
		return '';
	}
	return rce_fetch_related_html(
		$id,
		array(
			'locale'        => $atts['locale'],
			'k'             => $atts['k'],
			'heading_level' => $atts['heading_level'],
			'thumbnails'    => $atts['thumbnails'],
		)
	);
}

/**
 * Render callback of the related-content-engine/related block (attributes in block/block.json).
 *
 * @param array         $attributes The block's attributes.
 * @param string        $content    Unused: the block is dynamic.
 * @param WP_Block|null $block      The block instance (its postId context, inside a query loop).
 * @return string
 */
function rce_render_block( $attributes, $content = '', $block = null ) {
	$id = isset( $attributes['publicationId'] ) ? trim( (string) $attributes['publicationId'] ) : '';
	if ( '' === $id ) {
		$post_id = ( $block && isset( $block->context['postId'] ) ) ? $block->context['postId'] : null;
		$id      = rce_post_publication_id( $post_id );
	}
	if ( '' === $id ) {
		return '';
	}
	$html = rce_fetch_related_html(
		$id,
		array(
			'locale'        => isset( $attributes['locale'] ) ? $attributes['locale'] : '',
			'k'             => isset( $attributes['k'] ) ? $attributes['k'] : '',
			'heading_level' => isset( $attributes['headingLevel'] ) ? $attributes['headingLevel'] : 2,
			'thumbnails'    => ! empty( $attributes['thumbnails'] ),
		)
	);
	if ( '' === $html ) {
		return '';
	}
	return '<div ' . get_block_wrapper_attributes() . '>' . $html . '</div>';
}

/** Registers the shortcode and the block. */
function rce_register() {
	add_shortcode( 'related_content', 'rce_shortcode' );
	register_block_type( __DIR__ . '/block', array( 'render_callback' => 'rce_render_block' ) );
}
add_action( 'init', 'rce_register' );

/*
 * Settings > Related content.
 */

/**
 * A submitted setting, or its saved value when the form did not send it (options.php saves null for a field
 * left out, as a setting fixed by a constant is).
 *
 * @param string $name  One of the keys of rce_settings_spec().
 * @param mixed  $value The submitted value.
 * @return mixed
 */
function rce_submitted( $name, $value ) {
	return null === $value ? get_option( $name, rce_settings_spec()[ $name ]['default'] ) : $value;
}

/**
 * Sanitizes the service URL setting; an invalid URL is refused with a notice and the saved one kept.
 *
 * @param mixed $value The submitted URL.
 * @return string
 */
function rce_sanitize_service_url( $value ) {
	$value = rce_submitted( 'rce_service_url', $value );
	if ( '' === trim( (string) $value ) ) {
		return '';
	}
	$url = rce_clean_service_url( $value );
	if ( '' === $url ) {
		add_settings_error(
			'rce_service_url',
			'rce_service_url_invalid',
			__( 'The service URL must be an http:// or https:// address without a query string.', 'related-content-engine' )
		);
		return rce_clean_service_url( get_option( 'rce_service_url', '' ) );
	}
	return $url;
}

/**
 * Sanitizes the default locale setting: auto, en, fr or ar.
 *
 * @param mixed $value The submitted locale.
 * @return string
 */
function rce_sanitize_locale( $value ) {
	return rce_clean_locale_setting( rce_submitted( 'rce_locale', $value ) );
}

/**
 * Sanitizes the number of items: 1 to RCE_MAX_K.
 *
 * @param mixed $value The submitted number.
 * @return int
 */
function rce_sanitize_k( $value ) {
	return rce_clean_k( rce_submitted( 'rce_k', $value ) );
}

/**
 * Sanitizes the cache lifetime: 0 (off) to a day, in seconds.
 *
 * @param mixed $value The submitted number of seconds.
 * @return int
 */
function rce_sanitize_cache_ttl( $value ) {
	return rce_clean_cache_ttl( rce_submitted( 'rce_cache_ttl', $value ) );
}

/** Registers the settings, each with its sanitize_callback. */
function rce_register_settings() {
	$spec      = rce_settings_spec();
	$sanitizer = array(
		'rce_service_url' => array( 'string', 'rce_sanitize_service_url' ),
		'rce_locale'      => array( 'string', 'rce_sanitize_locale' ),
		'rce_k'           => array( 'integer', 'rce_sanitize_k' ),
		'rce_cache_ttl'   => array( 'integer', 'rce_sanitize_cache_ttl' ),
	);
	foreach ( $sanitizer as $name => $how ) {
		register_setting(
			'rce_settings',
			$name,
			array(
				'type'              => $how[0],
				'sanitize_callback' => $how[1],
				'default'           => $spec[ $name ]['default'],
				'show_in_rest'      => false,
			)
		);
	}

	add_settings_section( 'rce_main', '', '__return_false', 'rce_settings' );
	$fields = array(
		'rce_service_url' => __( 'Service URL', 'related-content-engine' ),
		'rce_locale'      => __( 'Language of the block', 'related-content-engine' ),
		'rce_k'           => __( 'Number of items', 'related-content-engine' ),
		'rce_cache_ttl'   => __( 'Cache lifetime (seconds)', 'related-content-engine' ),
	);
	foreach ( $fields as $name => $label ) {
		add_settings_field(
			$name,
			$label,
			'rce_render_field',
			'rce_settings',
			'rce_main',
			array(
				'name'      => $name,
				'label_for' => $name,
			)
		);
	}
}
add_action( 'admin_init', 'rce_register_settings' );

/** Adds Settings > Related content (for users who can manage options). */
function rce_add_settings_page() {
	add_options_page(
		__( 'Related content', 'related-content-engine' ),
		__( 'Related content', 'related-content-engine' ),
		'manage_options',
		'rce-settings',
		'rce_render_settings_page'
	);
}
add_action( 'admin_menu', 'rce_add_settings_page' );

/**
 * One settings field; when a wp-config.php constant fixes the setting, its value and a note instead of an input
 * (the form then leaves it out, and rce_submitted() keeps the saved option).
 *
 * @param array $args The field's name.
 */
function rce_render_field( $args ) {
	$name  = $args['name'];
	$value = rce_setting( $name );
	if ( rce_setting_is_fixed( $name ) ) {
		printf(
			'<code>%1$s</code><p class="description">%2$s</p>',
			esc_html( (string) $value ),
			esc_html(
				sprintf(
					/* translators: %s: a PHP constant's name */
					__( 'Set by %s in wp-config.php.', 'related-content-engine' ),
					rce_settings_spec()[ $name ]['constant']
				)
			)
		);
		return;
	}
	if ( 'rce_locale' === $name ) {
		$choices = array(
			'auto' => __( 'The language of the page (WordPress locale)', 'related-content-engine' ),
			'en'   => 'English',
			'fr'   => 'Français',
			'ar'   => 'العربية',
		);
		$current = rce_clean_locale_setting( $value );
		echo '<select id="rce_locale" name="rce_locale">';
		foreach ( $choices as $choice => $label ) {
			printf( '<option value="%1$s"%2$s>%3$s</option>', esc_attr( $choice ), selected( $current, $choice, false ), esc_html( $label ) );
		}
		echo '</select>';
	} elseif ( 'rce_service_url' === $name ) {
		printf(
			'<input type="url" class="regular-text code" id="rce_service_url" name="rce_service_url" value="%s" placeholder="https://related.example.org">',
			esc_attr( (string) $value )
		);
	} else {
		printf(
			'<input type="number" class="small-text" id="%1$s" name="%1$s" value="%2$s" min="%3$d" max="%4$d">',
			esc_attr( $name ),
			esc_attr( (string) $value ),
			'rce_k' === $name ? 1 : 0,
			'rce_k' === $name ? RCE_MAX_K : DAY_IN_SECONDS // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- integers.
		);
		if ( 'rce_cache_ttl' === $name ) {
			echo '<p class="description">' . esc_html__( '0 turns the cache off. A failed fetch is remembered for at most a minute.', 'related-content-engine' ) . '</p>';
		}
	}
}

/** The settings page. */
function rce_render_settings_page() {
	if ( ! current_user_can( 'manage_options' ) ) {
		return;
	}
	echo '<div class="wrap"><h1>' . esc_html( get_admin_page_title() ) . '</h1><form action="options.php" method="post">';
	settings_fields( 'rce_settings' );
	do_settings_sections( 'rce_settings' );
	submit_button();
	echo '</form></div>';
}
