/**
 * The block in the editor: its settings in the sidebar and a preview rendered by the server (the same
 * render_callback as on the site). Plain JavaScript on WordPress's globals: no build step.
 */
( function ( wp ) {
	'use strict';
	var el = wp.element.createElement;
	var __ = wp.i18n.__;
	var blockEditor = wp.blockEditor;
	var components = wp.components;
	var ServerSideRender = wp.serverSideRender;

	wp.blocks.registerBlockType( 'related-content-engine/related', {
		edit: function ( props ) {
			var attributes = props.attributes;
			var setAttributes = props.setAttributes;
			return el(
				'div',
				blockEditor.useBlockProps(),
				el(
					blockEditor.InspectorControls,
					null,
					el(
						components.PanelBody,
						{ title: __( 'Related content', 'related-content-engine' ) },
						el( components.TextControl, {
							label: __( 'Publication id', 'related-content-engine' ),
							help: __(
								'Empty: the post’s rce_publication_id field, else its slug.',
								'related-content-engine'
							),
							value: attributes.publicationId,
							onChange: function ( value ) {
								setAttributes( { publicationId: value } );
							},
						} ),
						el( components.SelectControl, {
							label: __( 'Language', 'related-content-engine' ),
							value: attributes.locale,
							options: [
								{ label: __( 'Default (settings, else the page’s)', 'related-content-engine' ), value: '' },
								{ label: 'English', value: 'en' },
								{ label: 'Français', value: 'fr' },
								{ label: 'العربية', value: 'ar' },
							],
							onChange: function ( value ) {
								setAttributes( { locale: value } );
							},
						} ),
						el( components.RangeControl, {
							label: __( 'Number of items', 'related-content-engine' ),
							help: __( 'Empty: the number in the settings.', 'related-content-engine' ),
							value: attributes.k,
							min: 1,
							max: 20,
							allowReset: true,
							onChange: function ( value ) {
								setAttributes( { k: value } );
							},
						} ),
						el( components.RangeControl, {
							label: __( 'Heading level', 'related-content-engine' ),
							value: attributes.headingLevel,
							min: 2,
							max: 6,
							onChange: function ( value ) {
								setAttributes( { headingLevel: value || 2 } );
							},
						} ),
						el( components.ToggleControl, {
							label: __( 'Thumbnails', 'related-content-engine' ),
							checked: !! attributes.thumbnails,
							onChange: function ( value ) {
								setAttributes( { thumbnails: value } );
							},
						} )
					)
				),
				el( ServerSideRender, {
					block: 'related-content-engine/related',
					attributes: attributes,
					urlQueryArgs: props.context && props.context.postId ? { post_id: props.context.postId } : {},
				} )
			);
		},
		save: function () {
			return null;
		},
	} );
} )( window.wp );
