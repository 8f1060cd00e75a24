// Shopify customer events as the Web Pixels API documents them
// (shopify.dev/docs/api/web-pixels-api/standard-events: product_viewed,
// product_added_to_cart, checkout_started, checkout_contact_info_submitted),
// with the field types of @shopify/web-pixels-extension's PixelEvents (money
// amounts are numbers, ids strings).

export const ORIGIN = 'https://shop.example.com';

const context = {
  document: {
    characterSet: 'UTF-8',
    location: {
      hash: '',
      host: 'shop.example.com',
      hostname: 'shop.example.com',
      href: `${ORIGIN}/products/blue-mug`,
      origin: ORIGIN,
      pathname: '/products/blue-mug',
      port: '',
      protocol: 'https:',
      search: '',
    },
    referrer: '',
    title: 'Blue mug',
  },
  navigator: {cookieEnabled: true, language: 'sv-SE', languages: ['sv-SE'], userAgent: 'Mozilla/5.0'},
  window: {},
};

export function variant(overrides = {}) {
  return {
    id: '40993442922574',
    image: {src: '//cdn.shopify.com/s/files/1/0612/products/blue-mug.jpg?v=1700000000'},
    price: {amount: 12.5, currencyCode: 'SEK'},
    product: {
      id: '7088032956494',
      title: 'Blue mug',
      type: 'Mugs',
      untranslatedTitle: 'Blue mug',
      url: '/products/blue-mug',
      vendor: 'Acme',
    },
    sku: 'MUG-BLUE',
    title: 'Default Title',
    untranslatedTitle: 'Default Title',
    ...overrides,
  };
}

function standard(name, id, timestamp, data) {
  return {clientId: 'c2f7e8a0-1b2c-4d5e-8f90-0a1b2c3d4e5f', context, data, id, name, seq: 3, timestamp, type: 'standard'};
}

export function productViewed(id = 'sh-88153c5a-8F2D-4CCA-3231-EF5C032A4C3B', productVariant = variant()) {
  return standard('product_viewed', id, '2026-12-07T09:58:12.412Z', {productVariant});
}

export function productAddedToCart(cartLine) {
  return standard('product_added_to_cart', 'sh-0b7c1a2e-4D21-4F5A-9C0E-6A1B2C3D4E5F', '2026-12-07T09:59:01.003Z', {
    cartLine:
      cartLine === undefined
        ? {
            cost: {totalAmount: {amount: 0.6, currencyCode: 'SEK'}},
            merchandise: variant({
              id: 'gid://shopify/ProductVariant/40993442922575',
              price: {amount: 0.1 + 0.2, currencyCode: 'SEK'},
              product: {...variant().product, id: 'gid://shopify/Product/7088032956495', title: 'Sugar cube'},
            }),
            quantity: 2,
          }
        : cartLine,
  });
}

export function checkout(overrides = {}) {
  return {
    attributes: [],
    billingAddress: null,
    buyerAcceptsEmailMarketing: false,
    buyerAcceptsSmsMarketing: false,
    currencyCode: 'SEK',
    delivery: null,
    discountApplications: [],
    discountsAmount: null,
    email: null,
    lineItems: [
      {
        discountAllocations: [],
        finalLinePrice: {amount: 25, currencyCode: 'SEK'},
        id: 'gid://shopify/CheckoutLineItem/1',
        properties: [],
        quantity: 2,
        sellingPlanAllocation: null,
        title: 'Blue mug',
        variant: variant(),
      },
    ],
    localization: {country: {isoCode: 'SE'}, language: {isoCode: 'sv-SE'}, market: {handle: 'se', id: '1'}},
    order: null,
    phone: null,
    shippingAddress: null,
    shippingLine: null,
    smsMarketingPhone: null,
    subtotalPrice: {amount: 25, currencyCode: 'SEK'},
    token: 'e0b1cb5a4b1b6e3f0c2d7a8f9e4b3c21',
    totalPrice: {amount: 49, currencyCode: 'SEK'},
    totalTax: {amount: 9.8, currencyCode: 'SEK'},
    transactions: [],
    ...overrides,
  };
}

export function checkoutStarted(data = checkout()) {
  return standard('checkout_started', 'sh-5d3e2f1a-7B6C-4A5D-8E9F-0A1B2C3D4E5F', '2026-12-07T10:01:30.000Z', {checkout: data});
}

export function contactInfoSubmitted(data = checkout({email: 'astrid@example.se', billingAddress: {firstName: 'Astrid', lastName: 'Lind'}})) {
  return standard('checkout_contact_info_submitted', 'sh-9a8b7c6d-5E4F-4A3B-2C1D-0E9F8A7B6C5D', '2026-12-07T10:02:45.500Z', {checkout: data});
}
