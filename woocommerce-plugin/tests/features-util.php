<?php
/**
 * Stand-in for WooCommerce's FeaturesUtil: records compatibility declarations.
 *
 * @package Triggerpost
 */

namespace Automattic\WooCommerce\Utilities;

/** FeaturesUtil::declare_compatibility( $feature, $plugin_file, $positive ). */
class FeaturesUtil {
	public static function declare_compatibility( $feature_id, $plugin_file, $positive_compatibility = true ) {
		\Test_Site::$declared[ $feature_id ] = array( $plugin_file, $positive_compatibility );
		return true;
	}
}
