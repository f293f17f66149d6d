<?php
/**
 * Dependencies of editor.js (plain JavaScript, no build step).
 *
 * @package RelatedContentEngine
 */

defined( 'ABSPATH' ) || exit;

return array(
	'dependencies' => array( 'wp-block-editor', 'wp-blocks', 'wp-components', 'wp-element', 'wp-i18n', 'wp-server-side-render' ),
	'version'      => '0.1.0',
);
