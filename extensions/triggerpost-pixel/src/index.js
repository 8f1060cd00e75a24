// @ts-check
// The pixel's entry point, as `shopify app deploy` bundles it: Shopify's pixel
// manager calls the registered function once per page with the pixel's API.
import {register} from '@shopify/web-pixels-extension';

import {start} from './pixel.js';

register((api) => {
  try {
    start(api);
  } catch (error) {
    // never throw into the storefront: a pixel that fails sends nothing
  }
});
