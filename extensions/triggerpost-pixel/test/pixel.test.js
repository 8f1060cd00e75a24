// The pixel as Shopify runs it: src/index.js registered through the real
// @shopify/web-pixels-extension `register` (it calls the `shopify.extend` global
// the pixel manager provides), then driven with a fake analytics bus, browser
// and init shaped as the package's types say.
import assert from 'node:assert/strict';
import {afterEach, beforeEach, describe, it, mock} from 'node:test';

import * as fx from './fixtures.js';

const registered = [];
globalThis.shopify = {
  extend(point, extend) {
    registered.push({point, extend});
  },
};
await import('../src/index.js');
const {FLUSH_AFTER_MS, MAX_BYTES, MAX_EVENTS, VISITOR_KEY} = await import('../src/pixel.js');

const KEY = 'pk_abcdefghijklmnopqrstuvwxyz';
const SETTINGS = {endpoint: 'https://tp.example.com/events/shopify', key: KEY};
const ADDRESS = `https://tp.example.com/events/shopify/${KEY}`;
const ALLOWED = {
  analyticsProcessingAllowed: true,
  marketingAllowed: true,
  preferencesProcessingAllowed: false,
  saleOfDataAllowed: false,
};
const SIGNED_IN = {email: 'astrid@example.se', firstName: 'Astrid', id: '6509104873678', lastName: 'Lind', ordersCount: 2, phone: null};

/** A browser's storage shared by the pages of one visit. */
function visit() {
  return {local: new Map(), cookies: new Map()};
}

/** One page of the storefront: the pixel started on it, and what it sent. */
function page({
  privacy = ALLOWED,
  customer = null,
  settings = SETTINGS,
  browserVisit = visit(),
  beacon = async () => true,
  localStorageFails = false,
} = {}) {
  const handlers = new Map();
  const consent = [];
  const sent = [];
  const writes = [];
  const browser = {
    localStorage: {
      getItem: async (key) => {
        if (localStorageFails) throw new Error('SecurityError');
        return browserVisit.local.has(key) ? browserVisit.local.get(key) : null;
      },
      setItem: async (key, value) => {
        if (localStorageFails) throw new Error('SecurityError');
        writes.push(key);
        browserVisit.local.set(key, String(value));
      },
      removeItem: async (key) => browserVisit.local.delete(key),
      clear: async () => browserVisit.local.clear(),
      key: async () => null,
      length: async () => browserVisit.local.size,
    },
    sessionStorage: {
      getItem: async () => null,
      setItem: async () => undefined,
      removeItem: async () => undefined,
      clear: async () => undefined,
      key: async () => null,
      length: async () => 0,
    },
    cookie: {
      get: async (name) => browserVisit.cookies.get(name) || '',
      set: async (cookie) => {
        const [pair] = cookie.split(';');
        const [name, value] = pair.split('=');
        writes.push(`cookie:${name}`);
        browserVisit.cookies.set(name, value);
        return cookie;
      },
    },
    sendBeacon: async (url, body) => {
      sent.push({url, raw: body, body: JSON.parse(body)});
      return beacon(url, body);
    },
  };
  const api = {
    settings,
    analytics: {
      subscribe(name, callback) {
        handlers.set(name, callback);
        return () => true;
      },
    },
    browser,
    init: {
      context: {},
      data: {customer, cart: null, shop: {countryCode: 'SE', myshopifyDomain: 'acme.myshopify.com', name: 'Acme', paymentSettings: {currencyCode: 'SEK'}, storefrontUrl: fx.ORIGIN}, purchasingCompany: null},
      customerPrivacy: privacy,
    },
    _pixelInfo: {},
    customerPrivacy: {
      subscribe(name, callback) {
        consent.push({name, callback});
        return () => true;
      },
    },
  };
  registered[0].extend(api);
  return {
    handlers,
    sent,
    writes,
    browserVisit,
    emit(event) {
      const handler = handlers.get(event.name);
      assert.ok(handler, `the pixel subscribes to ${event.name}`);
      handler(event);
    },
    chooseConsent(customerPrivacy) {
      for (const {name, callback} of consent) {
        if (name === 'visitorConsentCollected') callback({customerPrivacy});
      }
    },
  };
}

/** Let the batching timer run out, then every promise the sends wait on. */
async function later() {
  mock.timers.tick(FLUSH_AFTER_MS);
  for (let i = 0; i < 10; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

beforeEach(() => {
  mock.timers.enable({apis: ['setTimeout']});
});

afterEach(() => {
  mock.timers.reset();
});

describe('the pixel as Shopify loads it', () => {
  it('registers for the web pixel extension point through the package', () => {
    assert.equal(registered.length, 1);
    assert.equal(registered[0].point, 'WebPixel::Render');
  });

  it('subscribes to the four customer events a merchant needs and to consent changes', () => {
    const shop = page();
    assert.deepEqual([...shop.handlers.keys()].sort(), [
      'checkout_contact_info_submitted',
      'checkout_started',
      'product_added_to_cart',
      'product_viewed',
    ]);
  });

  it('stays silent in a shop whose settings are not triggerpost’s', () => {
    for (const settings of [
      {},
      {endpoint: SETTINGS.endpoint},
      {endpoint: 'http://tp.example.com/events/shopify', key: KEY},
      {endpoint: SETTINGS.endpoint, key: 'pk_short'},
      {endpoint: 'javascript:alert(1)', key: KEY},
    ]) {
      assert.equal(page({settings}).handlers.size, 0, JSON.stringify(settings));
    }
  });
});

describe('what a shopper’s visit sends', () => {
  it('a product view arrives as product_viewed with the webhooks’ ids and money as decimals', async () => {
    const shop = page();
    shop.emit(fx.productViewed());
    await later();
    assert.equal(shop.sent.length, 1);
    assert.equal(shop.sent[0].url, ADDRESS);
    const {visitor, events} = shop.sent[0].body;
    assert.match(visitor, /^[A-Za-z0-9_-]{16,64}$/);
    assert.deepEqual(events, [
      {
        id: 'sh-88153c5a-8F2D-4CCA-3231-EF5C032A4C3B',
        type: 'product_viewed',
        at: '2026-12-07T09:58:12.412Z',
        data: {
          product: {
            id: '7088032956494',
            variant_id: '40993442922574',
            title: 'Blue mug',
            url: 'https://shop.example.com/products/blue-mug',
            price: '12.50',
            currency: 'SEK',
            image_url: 'https://cdn.shopify.com/s/files/1/0612/products/blue-mug.jpg?v=1700000000',
          },
        },
      },
    ]);
  });

  it('an item added to the cart loses its gid prefixes and its float noise', async () => {
    const shop = page();
    shop.emit(fx.productAddedToCart());
    await later();
    const [event] = shop.sent[0].body.events;
    assert.equal(event.type, 'product_added_to_cart');
    assert.equal(event.data.quantity, 2);
    assert.equal(event.data.product.id, '7088032956495');
    assert.equal(event.data.product.variant_id, '40993442922575');
    assert.equal(event.data.product.price, '0.30');
    assert.equal(event.data.product.title, 'Sugar cube');
  });

  it('a started checkout carries its cart: token, lines at unit price, total and currency', async () => {
    const shop = page();
    shop.emit(fx.checkoutStarted());
    await later();
    const [event] = shop.sent[0].body.events;
    assert.equal(event.type, 'checkout_started');
    assert.deepEqual(event.data, {
      cart: {
        token: 'e0b1cb5a4b1b6e3f0c2d7a8f9e4b3c21',
        items: [
          {
            product_id: '7088032956494',
            title: 'Blue mug',
            quantity: 2,
            price: '12.50',
            variant_id: '40993442922574',
            image_url: 'https://cdn.shopify.com/s/files/1/0612/products/blue-mug.jpg?v=1700000000',
            url: 'https://shop.example.com/products/blue-mug',
          },
        ],
        total: '49.00',
        currency: 'SEK',
      },
    });
  });

  it('contact information given at checkout identifies the shopper and updates the checkout, in one request', async () => {
    const shop = page();
    shop.emit(fx.contactInfoSubmitted());
    await later();
    assert.equal(shop.sent.length, 1);
    const [identify, checkout] = shop.sent[0].body.events;
    assert.deepEqual(identify.data, {email: 'astrid@example.se', source: 'checkout', first_name: 'Astrid', last_name: 'Lind'});
    assert.equal(identify.type, 'identify');
    assert.equal(checkout.type, 'checkout_started');
    assert.equal(checkout.data.email, 'astrid@example.se');
    assert.equal(checkout.data.cart.token, 'e0b1cb5a4b1b6e3f0c2d7a8f9e4b3c21');
    assert.notEqual(identify.id, checkout.id);
    for (const {id} of [identify, checkout]) assert.match(id, /^[A-Za-z0-9_-]{8,64}$/);
  });

  it('a signed-in customer is identified once and named on the events', async () => {
    const shop = page({customer: SIGNED_IN});
    shop.emit(fx.productViewed());
    await later();
    const [identify, viewed] = shop.sent[0].body.events;
    assert.equal(identify.type, 'identify');
    assert.deepEqual(identify.data, {
      email: 'astrid@example.se',
      customer_id: '6509104873678',
      first_name: 'Astrid',
      last_name: 'Lind',
      source: 'customer',
    });
    assert.match(identify.id, /^customer-6509104873678-\d{8}$/);
    assert.deepEqual(viewed.data.customer, {
      email: 'astrid@example.se',
      customer_id: '6509104873678',
      first_name: 'Astrid',
      last_name: 'Lind',
    });
  });

  it('the same visitor keeps one id from page to page, and a new browser gets another', async () => {
    const browser = visit();
    const first = page({browserVisit: browser});
    first.emit(fx.productViewed('sh-first-page-view-0001'));
    await later();
    const second = page({browserVisit: browser});
    second.emit(fx.productViewed('sh-second-page-view-0002'));
    await later();
    const elsewhere = page();
    elsewhere.emit(fx.productViewed('sh-other-browser-0003'));
    await later();
    const id = first.sent[0].body.visitor;
    assert.equal(second.sent[0].body.visitor, id);
    assert.equal(browser.local.get(VISITOR_KEY), id);
    assert.equal(browser.cookies.get(VISITOR_KEY), id);
    assert.notEqual(elsewhere.sent[0].body.visitor, id);
  });

  it('a browser whose localStorage refuses keeps the visitor in the pixel’s cookie', async () => {
    const browser = visit();
    const first = page({browserVisit: browser, localStorageFails: true});
    first.emit(fx.productViewed());
    await later();
    const second = page({browserVisit: browser, localStorageFails: true});
    second.emit(fx.productViewed());
    await later();
    assert.equal(second.sent[0].body.visitor, first.sent[0].body.visitor);
  });
});

describe('batching', () => {
  it('events that come together wait for each other, and nothing goes before the short wait', async () => {
    const shop = page();
    shop.emit(fx.productViewed('sh-view-000000001'));
    shop.emit(fx.productViewed('sh-view-000000002'));
    shop.emit(fx.productAddedToCart());
    for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(shop.sent.length, 0);
    await later();
    assert.equal(shop.sent.length, 1);
    assert.deepEqual(
      shop.sent[0].body.events.map((e) => e.type),
      ['product_viewed', 'product_viewed', 'product_added_to_cart'],
    );
    shop.emit(fx.productViewed('sh-view-000000003'));
    await later();
    assert.equal(shop.sent.length, 2);
    assert.equal(shop.sent[1].body.events.length, 1);
  });

  it('more events than one request may hold go as several requests', async () => {
    const shop = page();
    for (let i = 0; i < MAX_EVENTS + 5; i += 1) shop.emit(fx.productViewed(`sh-burst-view-${String(i).padStart(4, '0')}`));
    await later();
    assert.deepEqual(shop.sent.map((s) => s.body.events.length), [MAX_EVENTS, 5]);
    const ids = shop.sent.flatMap((s) => s.body.events.map((e) => e.id));
    assert.equal(new Set(ids).size, MAX_EVENTS + 5);
  });

  it('no request is larger than the endpoint takes: a huge cart keeps the lines that fit', async () => {
    const shop = page();
    const line = fx.checkout().lineItems[0];
    const lineItems = Array.from({length: 100}, (_, i) => ({
      ...line,
      title: `Line ${i}`,
      variant: fx.variant({id: String(5000 + i), product: {...fx.variant().product, id: String(9000 + i), title: `A long product title ${'x'.repeat(120)} ${i}`}}),
    }));
    shop.emit(fx.checkoutStarted(fx.checkout({lineItems})));
    shop.emit(fx.productViewed());
    await later();
    for (const {raw} of shop.sent) assert.ok(new TextEncoder().encode(raw).length <= MAX_BYTES);
    const checkout = shop.sent.flatMap((s) => s.body.events).find((e) => e.type === 'checkout_started');
    assert.ok(checkout.data.cart.items.length > 10 && checkout.data.cart.items.length < 100);
    assert.equal(checkout.data.cart.total, '49.00');
    assert.ok(shop.sent.flatMap((s) => s.body.events).some((e) => e.type === 'product_viewed'));
  });
});

describe('consent', () => {
  it('sends nothing and stores no id when the visitor declined marketing', async () => {
    const shop = page({privacy: {...ALLOWED, marketingAllowed: false}});
    shop.emit(fx.productViewed());
    shop.emit(fx.contactInfoSubmitted());
    await later();
    assert.equal(shop.sent.length, 0);
    assert.deepEqual(shop.writes, []);
  });

  it('sends nothing when analytics is not allowed', async () => {
    const shop = page({privacy: {...ALLOWED, analyticsProcessingAllowed: false}});
    shop.emit(fx.productViewed());
    await later();
    assert.equal(shop.sent.length, 0);
  });

  it('sends nothing when the page gives no privacy state at all', async () => {
    const shop = page({privacy: null});
    shop.emit(fx.productViewed());
    await later();
    assert.equal(shop.sent.length, 0);
  });

  it('a visitor who withdraws consent on the page loses what was waiting; one who gives it is heard from then', async () => {
    const shop = page();
    shop.emit(fx.productViewed('sh-before-withdrawal'));
    shop.chooseConsent({...ALLOWED, marketingAllowed: false});
    await later();
    shop.emit(fx.productViewed('sh-while-withdrawn'));
    await later();
    assert.equal(shop.sent.length, 0);
    shop.chooseConsent(ALLOWED);
    shop.emit(fx.productViewed('sh-after-consent-given'));
    await later();
    assert.deepEqual(shop.sent.flatMap((s) => s.body.events.map((e) => e.id)), ['sh-after-consent-given']);
  });
});

describe('robustness on a real storefront', () => {
  it('events with missing or odd fields are passed over without throwing', async () => {
    const shop = page();
    const odd = [
      {...fx.productViewed(), data: undefined},
      {...fx.productViewed(), data: {productVariant: null}},
      fx.productViewed('sh-no-product-id', fx.variant({product: {...fx.variant().product, id: null}})),
      fx.productAddedToCart(null),
      fx.productAddedToCart({merchandise: fx.variant(), quantity: 0, cost: {totalAmount: {amount: 0, currencyCode: 'SEK'}}}),
      fx.checkoutStarted(null),
      fx.checkoutStarted(fx.checkout({token: null})),
      fx.checkoutStarted(fx.checkout({lineItems: []})),
      fx.checkoutStarted(fx.checkout({totalPrice: null, subtotalPrice: null})),
      fx.contactInfoSubmitted(fx.checkout({email: null, phone: '+46701234567'})),
      {name: 'product_viewed'},
    ];
    for (const event of odd) assert.doesNotThrow(() => shop.emit(event));
    assert.doesNotThrow(() => shop.handlers.get('product_viewed')(null));
    assert.doesNotThrow(() => shop.handlers.get('checkout_started')(42));
    await later();
    assert.equal(shop.sent.length, 0);
  });

  it('a product with only an id, no price, image or url still counts as a view', async () => {
    const shop = page();
    shop.emit(fx.productViewed('sh-bare-product-01', {id: null, image: null, price: null, product: {id: '123', title: '', type: null, untranslatedTitle: null, url: null, vendor: ''}, sku: null, title: null, untranslatedTitle: null}));
    await later();
    assert.deepEqual(shop.sent[0].body.events[0].data, {product: {id: '123'}});
  });

  it('an event without a usable id or time gets one of the contract’s form', async () => {
    const shop = page();
    shop.emit({...fx.productViewed(), id: 'x', timestamp: 'yesterday'});
    await later();
    const [event] = shop.sent[0].body.events;
    assert.match(event.id, /^[A-Za-z0-9_-]{8,64}$/);
    assert.ok(!Number.isNaN(Date.parse(event.at)) && event.at.endsWith('Z'));
  });

  it('a beacon the browser refuses goes again by fetch with keepalive, as text/plain', async () => {
    const calls = [];
    const realFetch = globalThis.fetch;
    globalThis.fetch = async (url, options) => {
      calls.push({url, options});
      return new Response(null, {status: 202});
    };
    try {
      const shop = page({beacon: async () => false});
      shop.emit(fx.productViewed());
      await later();
      assert.equal(calls.length, 1);
      assert.equal(calls[0].url, ADDRESS);
      assert.equal(calls[0].options.keepalive, true);
      assert.equal(calls[0].options.headers['Content-Type'], 'text/plain;charset=UTF-8');
      assert.equal(calls[0].options.body, shop.sent[0].raw);
    } finally {
      globalThis.fetch = realFetch;
    }
  });

  it('a beacon that throws and a fetch that fails never reach the storefront', async () => {
    const realFetch = globalThis.fetch;
    globalThis.fetch = async () => {
      throw new TypeError('Failed to fetch');
    };
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const shop = page({
        beacon: () => {
          throw new Error('sendBeacon is not available');
        },
      });
      shop.emit(fx.productViewed());
      await later();
      assert.equal(shop.sent.length, 1);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      globalThis.fetch = realFetch;
    }
  });
});
