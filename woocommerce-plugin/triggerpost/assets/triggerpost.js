/**
 * triggerpost storefront events (no build step, no dependencies).
 *
 * Reads the page's facts from <script id="triggerpost-data"> (printed by the
 * plugin only when the store is connected) and sends storefront events to
 * triggerpost with navigator.sendBeacon as text/plain JSON, which needs no CORS
 * preflight and survives the page being left. Every step is guarded: a failure
 * here never breaks the shop's page.
 */
( function () {
	'use strict';

	var VISITOR_COOKIE = 'triggerpost_vid';
	var MAX_EVENTS = 20;
	var config;

	try {
		var element = document.getElementById( 'triggerpost-data' );
		config = element ? JSON.parse( element.textContent ) : null;
	} catch ( error ) {
		config = null;
	}
	if ( ! config || ! config.endpoint ) {
		return;
	}

	function randomId( length ) {
		var alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
		var bytes = new Uint8Array( length );
		( window.crypto || window.msCrypto ).getRandomValues( bytes );
		var out = '';
		for ( var i = 0; i < length; i++ ) {
			out += alphabet.charAt( bytes[ i ] % alphabet.length );
		}
		return out;
	}

	/** The first-party visitor id: a cookie on the shop's own domain, a year. */
	function visitorId() {
		var match = document.cookie.match( /(?:^|;\s*)triggerpost_vid=([A-Za-z0-9_-]{16,64})/ );
		if ( match ) {
			return match[ 1 ];
		}
		var id = randomId( 26 );
		document.cookie = VISITOR_COOKIE + '=' + id + ';path=/;max-age=31536000;SameSite=Lax' +
			( location.protocol === 'https:' ? ';Secure' : '' );
		return id;
	}

	function send( events ) {
		try {
			var visitor = visitorId();
			for ( var start = 0; start < events.length; start += MAX_EVENTS ) {
				var body = JSON.stringify( { visitor: visitor, events: events.slice( start, start + MAX_EVENTS ) } );
				var queued = false;
				if ( navigator.sendBeacon ) {
					queued = navigator.sendBeacon( config.endpoint, new Blob( [ body ], { type: 'text/plain;charset=UTF-8' } ) );
				}
				if ( ! queued && window.fetch ) {
					fetch( config.endpoint, {
						method: 'POST', body: body, keepalive: true, mode: 'cors', credentials: 'omit',
						headers: { 'Content-Type': 'text/plain;charset=UTF-8' }
					} ).catch( function () {} );
				}
			}
		} catch ( error ) {
			// Never the page's problem.
		}
	}

	function event( type, data ) {
		return { id: randomId( 24 ), type: type, at: new Date().toISOString(), data: data };
	}

	function withCustomer( data ) {
		if ( config.customer ) {
			data.customer = config.customer;
		}
		return data;
	}

	/** Server-side events (adds to cart) get the cart as it is now. */
	function completeAdds( events, cart ) {
		return events.map( function ( item ) {
			if ( item.type === 'product_added_to_cart' && cart && ! item.data.cart ) {
				item.data.cart = cart;
			}
			return item;
		} );
	}

	function validEmail( value ) {
		return /^[^\s@]+@[^\s@]+\.[^\s@]{2,}$/.test( value ) && value.length <= 254;
	}

	var lastCheckout = '';
	function checkoutStarted( cart, email ) {
		if ( ! cart ) {
			return;
		}
		var data = { cart: cart };
		if ( email ) {
			data.email = email;
		}
		withCustomer( data );
		var signature = JSON.stringify( data );
		if ( signature === lastCheckout ) {
			return; // Nothing changed since the last one.
		}
		lastCheckout = signature;
		send( [ event( 'checkout_started', data ) ] );
	}

	/** Ask the shop for what an add that loaded no page left waiting. */
	function fetchState( then ) {
		if ( ! window.fetch || ! config.stateUrl ) {
			return;
		}
		fetch( config.stateUrl, { method: 'POST', credentials: 'same-origin', headers: { 'X-Triggerpost': '1' } } )
			.then( function ( response ) { return response.ok ? response.json() : null; } )
			.then( function ( state ) {
				if ( ! state ) {
					return;
				}
				if ( state.cart ) {
					config.cart = state.cart;
				}
				if ( state.events && state.events.length ) {
					send( completeAdds( state.events, state.cart ) );
				}
				if ( then ) {
					then( state );
				}
			} )
			.catch( function () {} );
	}

	function currentEmail() {
		var input = document.querySelector( '#billing_email, .wc-block-checkout input[type="email"], .wp-block-woocommerce-checkout input[type="email"]' );
		var value = input ? String( input.value || '' ).trim() : '';
		return validEmail( value ) ? value : '';
	}

	try {
		var events = completeAdds( config.events || [], config.cart );

		if ( config.customer && config.customer.email ) {
			var seenKey = 'triggerpost_identified';
			var seen = null;
			try { seen = sessionStorage.getItem( seenKey ); } catch ( error ) {}
			if ( seen !== config.customer.email ) {
				var identify = { email: config.customer.email, source: 'customer' };
				[ 'customer_id', 'first_name', 'last_name' ].forEach( function ( key ) {
					if ( config.customer[ key ] ) {
						identify[ key ] = config.customer[ key ];
					}
				} );
				events.push( event( 'identify', identify ) );
				try { sessionStorage.setItem( seenKey, config.customer.email ); } catch ( error ) {}
			}
		}
		if ( config.page === 'product' && config.product ) {
			events.push( event( 'product_viewed', withCustomer( { product: config.product } ) ) );
		}
		if ( config.page === 'cart' && config.cart ) {
			events.push( event( 'cart_viewed', withCustomer( { cart: config.cart } ) ) );
		}
		if ( events.length ) {
			send( events );
		}

		if ( config.page === 'checkout' ) {
			checkoutStarted( config.cart, currentEmail() );

			// The email as soon as it is typed (classic and block checkout).
			var timer = null;
			var onEmail = function ( domEvent ) {
				var target = domEvent.target;
				if ( ! target || ! target.matches || ! target.matches( '#billing_email, input[type="email"]' ) ) {
					return;
				}
				clearTimeout( timer );
				timer = setTimeout( function () {
					var email = currentEmail();
					if ( email ) {
						checkoutStarted( config.cart, email );
					}
				}, domEvent.type === 'input' ? 800 : 0 );
			};
			document.addEventListener( 'input', onEmail, true );
			document.addEventListener( 'change', onEmail, true );

			// The cart changed on the checkout (classic: updated_checkout).
			if ( window.jQuery ) {
				window.jQuery( document.body ).on( 'updated_checkout', function () {
					fetchState( function () { checkoutStarted( config.cart, currentEmail() ); } );
				} );
			}
		}

		// Adds that load no page: classic AJAX buttons and the blocks.
		if ( window.jQuery ) {
			window.jQuery( document.body ).on( 'added_to_cart', function () { fetchState(); } );
		}
		document.body.addEventListener( 'wc-blocks_added_to_cart', function () { fetchState(); } );
	} catch ( error ) {
		// Never the page's problem.
	}
}() );
