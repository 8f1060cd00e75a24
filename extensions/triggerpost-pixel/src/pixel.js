// @ts-check
/**
 * triggerpost's Web Pixel: Shopify's customer events, in the storefront event
 * contract, sent to triggerpost's endpoint `POST <endpoint>/<key>`.
 *
 * Rules it keeps, because it runs on every page of someone else's shop:
 * - it never throws into the storefront and never waits on anything the page
 *   needs: every callback is wrapped, sends are beacons (fire and forget);
 * - nothing is sent, and no visitor id is stored, unless the visitor allowed
 *   analytics and marketing (Shopify's privacy API: `init.customerPrivacy`,
 *   then `visitorConsentCollected` when the visitor chooses on the page);
 * - events wait at most FLUSH_AFTER_MS so that the few that come together
 *   (a view and a sign-in, contact information and the checkout) go as one
 *   request, within the endpoint's limits (MAX_EVENTS, MAX_BYTES).
 *
 * Ids are sent as the platform's webhooks show them (numeric, no `gid://`
 * prefix) and money as decimal strings, as the contract asks.
 */

/** @typedef {import('@shopify/web-pixels-extension').ExtensionApi} ExtensionApi */
/** @typedef {import('@shopify/web-pixels-extension').ProductVariant} ProductVariant */
/** @typedef {import('@shopify/web-pixels-extension').CartLine} CartLine */
/** @typedef {import('@shopify/web-pixels-extension').Checkout} Checkout */
/** @typedef {import('@shopify/web-pixels-extension').CheckoutLineItem} CheckoutLineItem */
/** @typedef {import('@shopify/web-pixels-extension').MoneyV2} MoneyV2 */
/** @typedef {import('@shopify/web-pixels-extension').Customer} Customer */
/** @typedef {{id: string, type: string, at: string, data: Record<string, unknown>}} OutEvent */
/** @typedef {{setTimeout: (fn: () => void, ms: number) => unknown, now: () => Date}} Clock */

/** where the visitor id is kept (the pixel's own storage: the storefront's origin) */
export const VISITOR_KEY = '_triggerpost_visitor';
/** how long an event waits for others to go with it */
export const FLUSH_AFTER_MS = 500;
/** the endpoint's limits: events per request and bytes per body */
export const MAX_EVENTS = 20;
export const MAX_BYTES = 16 * 1024;
/** cart lines per event, as the contract allows */
export const MAX_ITEMS = 100;
/** a year, for the visitor cookie */
const COOKIE_SECONDS = 365 * 24 * 3600;

const KEY_PATTERN = /^pk_[a-z2-7]{26}$/;
const VISITOR_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
const DECIMAL_PATTERN = /^-?\d+(\.\d+)?$/;
const ZONED_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$/;

/** @type {Clock} */
const REAL_CLOCK = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  now: () => new Date(),
};

/**
 * Start the pixel for one page. Subscribes to the events it maps; sends nothing
 * when the settings are not ours (a pixel left without them is inert).
 * @param {ExtensionApi} api
 * @param {Clock} [clock]
 */
export function start(api, clock = REAL_CLOCK) {
  const {analytics, browser, init, settings} = api;
  const address = eventsAddress(settings);
  if (address === null) return;

  let allowed = permits(init && init.customerPrivacy);
  /** @type {OutEvent[]} */
  let queue = [];
  let timer = false;
  /** @type {Promise<string> | null} */
  let visitor = null;

  const send = async () => {
    timer = false;
    const events = queue;
    queue = [];
    if (!allowed || events.length === 0) return;
    visitor = visitor || visitorId(browser, clock);
    const id = await visitor;
    for (const body of bodies(id, events)) {
      beacon(browser, address, body);
    }
  };

  /** @param {OutEvent | null} event */
  const enqueue = (event) => {
    if (!allowed || event === null) return;
    queue.push(event);
    if (!timer) {
      timer = true;
      clock.setTimeout(() => {
        send().catch(() => {});
      }, FLUSH_AFTER_MS);
    }
  };

  /**
   * @param {string} name
   * @param {(event: any) => OutEvent[]} map
   */
  const on = (name, map) => {
    analytics.subscribe(name, (event) => {
      try {
        for (const out of map(event)) enqueue(out);
      } catch (error) {
        // a payload we did not expect: that event is not sent, the page goes on
      }
    });
  };

  const customer = knownCustomer(init && init.data && init.data.customer);

  try {
    api.customerPrivacy.subscribe('visitorConsentCollected', (event) => {
      allowed = permits(event && event.customerPrivacy);
      if (!allowed) queue = [];
    });
  } catch (error) {
    // no privacy API on this page: the consent read at load stands
  }

  on('product_viewed', (event) => {
    const product = productOf(event.data && event.data.productVariant, event);
    if (product === null) return [];
    return [outEvent(event, '', 'product_viewed', withCustomer({product}, customer), clock)];
  });

  on('product_added_to_cart', (event) => {
    const line = event.data && event.data.cartLine;
    const product = productOf(line && line.merchandise, event);
    const quantity = positive(line && line.quantity);
    if (product === null || quantity === null) return [];
    const data = withCustomer({product, quantity}, customer);
    return [outEvent(event, '', 'product_added_to_cart', data, clock)];
  });

  on('checkout_started', (event) => {
    const checkout = event.data && event.data.checkout;
    const cart = cartOf(checkout, event);
    if (cart === null) return [];
    const data = withCustomer({cart}, customer);
    const email = text(checkout.email);
    if (email !== undefined) data.email = email;
    return [outEvent(event, '', 'checkout_started', data, clock)];
  });

  on('checkout_contact_info_submitted', (event) => {
    const checkout = event.data && event.data.checkout;
    const email = text(checkout && checkout.email);
    if (email === undefined) return [];
    const postal = checkout.billingAddress || checkout.shippingAddress || {};
    /** @type {Record<string, unknown>} */
    const who = {email, source: 'checkout'};
    if (customer !== null && customer.customer_id !== undefined) who.customer_id = customer.customer_id;
    const first = text(postal.firstName);
    const last = text(postal.lastName);
    if (first !== undefined) who.first_name = first;
    if (last !== undefined) who.last_name = last;
    const out = [outEvent(event, '-i', 'identify', who, clock)];
    const cart = cartOf(checkout, event);
    if (cart !== null) {
      const data = withCustomer({cart, email}, customer);
      out.push(outEvent(event, '-c', 'checkout_started', data, clock));
    }
    return out;
  });

  // a signed-in customer: once a day per visitor is enough (the endpoint keeps
  // one copy of an event id per visitor)
  if (customer !== null && customer.email !== undefined) {
    const day = clock.now().toISOString().slice(0, 10).replace(/-/g, '');
    /** @type {Record<string, unknown>} */
    const who = {...customer, source: 'customer'};
    const ident = customer.customer_id !== undefined ? customer.customer_id : 'guest';
    enqueue({
      id: eventId(`customer-${ident}-${day}`, ''),
      type: 'identify',
      at: clock.now().toISOString(),
      data: who,
    });
  }
}

/**
 * The address events go to, or null when the settings are missing or not ours.
 * @param {Record<string, any>} settings
 * @returns {string | null}
 */
export function eventsAddress(settings) {
  const endpoint = settings && typeof settings.endpoint === 'string' ? settings.endpoint.trim() : '';
  const key = settings && typeof settings.key === 'string' ? settings.key.trim() : '';
  if (!KEY_PATTERN.test(key) || !/^https:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(endpoint)) return null;
  return `${endpoint.replace(/\/+$/, '')}/${key}`;
}

/**
 * Whether Shopify's privacy API allows what the events are for.
 * @param {{analyticsProcessingAllowed?: boolean, marketingAllowed?: boolean} | null | undefined} privacy
 */
export function permits(privacy) {
  return Boolean(
    privacy && privacy.analyticsProcessingAllowed === true && privacy.marketingAllowed === true,
  );
}

/**
 * The request bodies for these events: at most MAX_EVENTS each, each at most
 * MAX_BYTES (an event too large alone loses cart lines until it fits, or is dropped).
 * @param {string} visitor
 * @param {OutEvent[]} events
 * @returns {string[]}
 */
export function bodies(visitor, events) {
  /** @type {string[]} */
  const out = [];
  /** @type {OutEvent[]} */
  let batch = [];
  const body = (/** @type {OutEvent[]} */ list) => JSON.stringify({visitor, events: list});
  for (const raw of events) {
    const event = fitted(visitor, raw);
    if (event === null) continue;
    if (batch.length === MAX_EVENTS || byteLength(body([...batch, event])) > MAX_BYTES) {
      if (batch.length) out.push(body(batch));
      batch = [];
    }
    batch.push(event);
  }
  if (batch.length) out.push(body(batch));
  return out;
}

/**
 * @param {string} visitor
 * @param {OutEvent} event
 * @returns {OutEvent | null}
 */
function fitted(visitor, event) {
  const size = (/** @type {OutEvent} */ e) =>
    byteLength(JSON.stringify({visitor, events: [e]}));
  if (size(event) <= MAX_BYTES) return event;
  const cart = /** @type {{items?: unknown[]} | undefined} */ (event.data.cart);
  if (!cart || !Array.isArray(cart.items)) return null;
  const items = cart.items.slice();
  while (items.length > 1) {
    items.pop();
    const smaller = {...event, data: {...event.data, cart: {...cart, items}}};
    if (size(smaller) <= MAX_BYTES) return smaller;
  }
  return null;
}

/** @param {string} value */
function byteLength(value) {
  return new TextEncoder().encode(value).length;
}

/**
 * Send one body without waiting for it: the pixel API's beacon (text/plain, no
 * preflight, survives the page going away), else fetch with keepalive.
 * @param {ExtensionApi['browser']} browser
 * @param {string} address
 * @param {string} body
 */
function beacon(browser, address, body) {
  const fallback = () => {
    try {
      if (typeof fetch === 'function') {
        fetch(address, {
          method: 'POST',
          body,
          keepalive: true,
          credentials: 'omit',
          headers: {'Content-Type': 'text/plain;charset=UTF-8'},
        }).catch(() => {});
      }
    } catch (error) {
      // nothing more to try
    }
  };
  try {
    Promise.resolve(browser.sendBeacon(address, body)).then(
      (queued) => {
        if (queued === false) fallback();
      },
      fallback,
    );
  } catch (error) {
    fallback();
  }
}

/**
 * The visitor's first-party id: the pixel's localStorage, else its cookie, else new
 * (kept in both). Storage that fails gives an id for this page only.
 * @param {ExtensionApi['browser']} browser
 * @param {Clock} clock
 * @returns {Promise<string>}
 */
export async function visitorId(browser, clock) {
  /** @type {string | null} */
  let found = null;
  try {
    const stored = await browser.localStorage.getItem(VISITOR_KEY);
    if (typeof stored === 'string' && VISITOR_PATTERN.test(stored)) found = stored;
  } catch (error) {
    // storage refused: try the cookie
  }
  if (found === null) {
    try {
      const cookie = await browser.cookie.get(VISITOR_KEY);
      if (typeof cookie === 'string' && VISITOR_PATTERN.test(cookie)) found = cookie;
    } catch (error) {
      // no cookie either
    }
  }
  const id = found || newVisitorId(clock);
  try {
    if (found === null) await browser.localStorage.setItem(VISITOR_KEY, id);
  } catch (error) {
    // kept in the cookie only
  }
  try {
    // refreshed each page, so it lasts a year from the last visit
    await browser.cookie.set(
      `${VISITOR_KEY}=${id}; path=/; max-age=${COOKIE_SECONDS}; SameSite=Lax; Secure`,
    );
  } catch (error) {
    // kept in localStorage only
  }
  return id;
}

/** @param {Clock} clock */
function newVisitorId(clock) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
  const bytes = new Uint8Array(22);
  if (typeof crypto !== 'undefined' && crypto.getRandomValues) {
    crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i += 1) bytes[i] = Math.floor(Math.random() * 256);
  }
  const stamp = clock.now().getTime().toString(36);
  return `v${stamp}${Array.from(bytes, (b) => alphabet[b & 63]).join('')}`.slice(0, 64);
}

/**
 * @param {any} event the Shopify event
 * @param {string} suffix to tell apart the events one Shopify event becomes
 * @param {string} type
 * @param {Record<string, unknown>} data
 * @param {Clock} clock
 * @returns {OutEvent}
 */
function outEvent(event, suffix, type, data, clock) {
  const stamp = typeof event.timestamp === 'string' && ZONED_TIME.test(event.timestamp);
  return {
    id: eventId(event.id, suffix),
    type,
    at: stamp ? event.timestamp : clock.now().toISOString(),
    data,
  };
}

/**
 * A client event id of the contract's form (8-64 of [A-Za-z0-9_-]) from Shopify's.
 * @param {unknown} raw
 * @param {string} suffix
 */
export function eventId(raw, suffix) {
  const clean = String(raw == null ? '' : raw).replace(/[^A-Za-z0-9_-]/g, '_');
  const id = clean.slice(0, 64 - suffix.length) + suffix;
  if (id.length >= 8 && clean.length > 0) return id;
  return (`e${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`.slice(0, 24) + suffix);
}

/**
 * `gid://shopify/Product/123` or `123` -> `123` (the webhooks' ids).
 * @param {unknown} value
 * @returns {string | undefined}
 */
export function plainId(value) {
  if (value === null || value === undefined) return undefined;
  const text = String(value).trim();
  const gid = /^gid:\/\/shopify\/[A-Za-z]+\/([^/?#]+)/.exec(text);
  const id = gid ? gid[1] : text;
  return id === '' ? undefined : id;
}

/**
 * A money amount as a decimal string with at least two decimals
 * (`12.5` -> `"12.50"`), or undefined when there is none.
 * @param {MoneyV2 | null | undefined} money
 * @returns {string | undefined}
 */
export function decimal(money) {
  if (!money) return undefined;
  const amount = /** @type {unknown} */ (money.amount);
  let text;
  if (typeof amount === 'string' && DECIMAL_PATTERN.test(amount.trim())) {
    text = amount.trim();
  } else if (typeof amount === 'number' && Number.isFinite(amount)) {
    // a float from the event: six places take away its binary noise
    text = String(Number(amount.toFixed(6)));
    if (!DECIMAL_PATTERN.test(text)) return undefined;
  } else {
    return undefined;
  }
  const [whole, fraction = ''] = text.split('.');
  return `${whole}.${fraction.padEnd(2, '0')}`;
}

/** @param {unknown} value */
function text(value) {
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  return trimmed === '' ? undefined : trimmed;
}

/** @param {unknown} value */
function positive(value) {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : null;
}

/**
 * An absolute https URL (a storefront path against the page's origin).
 * @param {unknown} value
 * @param {any} event
 */
function absolute(value, event) {
  const raw = text(value);
  if (raw === undefined) return undefined;
  if (raw.startsWith('//')) return `https:${raw}`;
  if (/^https?:\/\//.test(raw)) return raw;
  const origin =
    event && event.context && event.context.document && event.context.document.location
      ? text(event.context.document.location.origin)
      : undefined;
  if (origin === undefined || !raw.startsWith('/')) return undefined;
  return `${origin}${raw}`;
}

/**
 * @param {ProductVariant | null | undefined} variant
 * @param {any} event
 * @returns {Record<string, unknown> | null}
 */
function productOf(variant, event) {
  if (!variant || !variant.product) return null;
  const id = plainId(variant.product.id);
  if (id === undefined) return null;
  /** @type {Record<string, unknown>} */
  const product = {id};
  const optional = {
    variant_id: plainId(variant.id),
    title: text(variant.product.title) || text(variant.title),
    url: absolute(variant.product.url, event),
    price: decimal(variant.price),
    currency: variant.price ? text(variant.price.currencyCode) : undefined,
    image_url: absolute(variant.image && variant.image.src, event),
  };
  for (const [name, value] of Object.entries(optional)) {
    if (value !== undefined) product[name] = value;
  }
  return product;
}

/**
 * @param {CheckoutLineItem} line
 * @param {any} event
 * @returns {Record<string, unknown> | null}
 */
function itemOf(line, event) {
  const product = productOf(line && line.variant, event);
  const quantity = positive(line && line.quantity);
  if (product === null || quantity === null) return null;
  /** @type {Record<string, unknown>} */
  const item = {
    product_id: product.id,
    title: product.title || text(line.title) || '',
    quantity,
  };
  // the unit price; the line's total when the variant has none
  const finalLine = decimal(line.finalLinePrice);
  const unit = product.price || (finalLine !== undefined ? perUnit(finalLine, quantity) : undefined);
  if (unit === undefined) return null;
  item.price = unit;
  for (const name of ['variant_id', 'image_url', 'url']) {
    if (product[name] !== undefined) item[name] = product[name];
  }
  return item;
}

/**
 * @param {string} total
 * @param {number} quantity
 */
function perUnit(total, quantity) {
  return decimal({amount: Number(total) / quantity, currencyCode: ''});
}

/**
 * The checkout as the contract's CART, or null without a token or lines.
 * @param {Checkout | null | undefined} checkout
 * @param {any} event
 * @returns {Record<string, unknown> | null}
 */
function cartOf(checkout, event) {
  if (!checkout) return null;
  const token = cartToken(checkout.token);
  if (token === null) return null;
  const items = (Array.isArray(checkout.lineItems) ? checkout.lineItems : [])
    .map((line) => itemOf(line, event))
    .filter((item) => item !== null)
    .slice(0, MAX_ITEMS);
  const money = checkout.totalPrice || checkout.subtotalPrice;
  const total = decimal(money);
  const currency = text(checkout.currencyCode) || (money ? text(money.currencyCode) : undefined);
  if (items.length === 0 || total === undefined || currency === undefined) return null;
  return {token, items, total, currency};
}

/**
 * Shopify's checkout token in the contract's form (it is usually 32 hex characters).
 * @param {unknown} raw
 * @returns {string | null}
 */
export function cartToken(raw) {
  const value = text(raw);
  if (value === undefined) return null;
  const clean = value.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64);
  return TOKEN_PATTERN.test(clean) ? clean : null;
}

/**
 * The signed-in customer as the contract's CUSTOMER, or null for a guest.
 * @param {Partial<Customer> | null | undefined} raw
 * @returns {{email?: string, customer_id?: string, first_name?: string, last_name?: string} | null}
 */
function knownCustomer(raw) {
  if (!raw) return null;
  /** @type {{email?: string, customer_id?: string, first_name?: string, last_name?: string}} */
  const customer = {};
  const fields = {
    email: text(raw.email),
    customer_id: plainId(raw.id),
    first_name: text(raw.firstName),
    last_name: text(raw.lastName),
  };
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined) customer[/** @type {keyof typeof fields} */ (name)] = value;
  }
  return Object.keys(customer).length ? customer : null;
}

/**
 * @param {Record<string, unknown>} data
 * @param {object | null} customer
 */
function withCustomer(data, customer) {
  if (customer !== null) data.customer = customer;
  return data;
}
