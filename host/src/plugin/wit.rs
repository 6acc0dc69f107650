//! The WIT versions the host speaks, one module each, as Zed's extension host does:
//! `since_v0_X_Y.rs` holds that version's bindings, its conversions of host records, its
//! adapters to the newest version, its calls and the API versions it loads. The table at
//! the end (`wit_versions!`) is the one place that lists them: it makes the enums a plugin
//! handle keeps (the version its component exports) and sends each call to the module of
//! that version. Adding a version is a module here and a row in the table.

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::mapper::Direction;
use super::runtime::{Live, Loaded};
use super::sandbox::PluginState;
use super::{CallContext, Conflict, PluginCallError, Resolution, Side};
use crate::record::Fields;

/// The `field`-list conversions of one WIT version, as its module `convert`, from the path of
/// its `types` (0.1.0 and 0.2.0 have the same `field`, `value`, `scalar` and `datetime`, as
/// distinct Rust types). Data coming back from a plugin is untrusted: every failure is an
/// error, never a panic.
macro_rules! field_conversions {
    ($($types:tt)+) => {
        /// Host records to and from this version's `field` lists.
        pub(crate) mod convert {
            use chrono::{DateTime, Utc};

            use $($types)+ as wit;
            use crate::record::{Fields, Value};

            /// Host record → WIT field list. Fails on a list nested in a list (WIT has no recursion).
            pub(crate) fn fields_to_wit(fields: &Fields) -> Result<Vec<wit::Field>, String> {
                fields
                    .iter()
                    .map(|(name, value)| {
                        let value = value_to_wit(value)
                            .map_err(|e| format!("field `{name}` can't be passed to a plugin: {e}"))?;
                        Ok(wit::Field {
                            name: name.to_owned(),
                            value,
                        })
                    })
                    .collect()
            }

            /// WIT field list from a plugin → host record. Fails on a duplicate name or a time out of
            /// range.
            pub(crate) fn fields_from_wit(fields: Vec<wit::Field>) -> Result<Fields, String> {
                let mut out = Fields::new();
                for field in fields {
                    let value =
                        value_from_wit(field.value).map_err(|e| format!("field `{}`: {e}", field.name))?;
                    if out.contains_key(&field.name) {
                        return Err(format!("field `{}` appears more than once", field.name));
                    }
                    out.insert(field.name, value);
                }
                Ok(out)
            }

            fn value_to_wit(value: &Value) -> Result<wit::Value, String> {
                Ok(match value {
                    Value::Null => wit::Value::Null,
                    Value::Text(t) => wit::Value::Text(t.clone()),
                    Value::Integer(n) => wit::Value::Integer(*n),
                    Value::Number(n) => wit::Value::Number(*n),
                    Value::Boolean(b) => wit::Value::Boolean(*b),
                    Value::DateTime(t) => wit::Value::DateTime(datetime_to_wit(t)),
                    Value::List(items) => {
                        wit::Value::List(items.iter().map(scalar_to_wit).collect::<Result<_, _>>()?)
                    }
                })
            }

            fn scalar_to_wit(value: &Value) -> Result<wit::Scalar, String> {
                Ok(match value {
                    Value::Null => wit::Scalar::Null,
                    Value::Text(t) => wit::Scalar::Text(t.clone()),
                    Value::Integer(n) => wit::Scalar::Integer(*n),
                    Value::Number(n) => wit::Scalar::Number(*n),
                    Value::Boolean(b) => wit::Scalar::Boolean(*b),
                    Value::DateTime(t) => wit::Scalar::DateTime(datetime_to_wit(t)),
                    Value::List(_) => return Err("a list inside a list".into()),
                })
            }

            fn value_from_wit(value: wit::Value) -> Result<Value, String> {
                Ok(match value {
                    wit::Value::Null => Value::Null,
                    wit::Value::Text(t) => Value::Text(t),
                    wit::Value::Integer(n) => Value::Integer(n),
                    wit::Value::Number(n) => Value::Number(n),
                    wit::Value::Boolean(b) => Value::Boolean(b),
                    wit::Value::DateTime(t) => Value::DateTime(datetime_from_wit(t)?),
                    wit::Value::List(items) => Value::List(
                        items
                            .into_iter()
                            .map(scalar_from_wit)
                            .collect::<Result<_, _>>()?,
                    ),
                })
            }

            fn scalar_from_wit(value: wit::Scalar) -> Result<Value, String> {
                Ok(match value {
                    wit::Scalar::Null => Value::Null,
                    wit::Scalar::Text(t) => Value::Text(t),
                    wit::Scalar::Integer(n) => Value::Integer(n),
                    wit::Scalar::Number(n) => Value::Number(n),
                    wit::Scalar::Boolean(b) => Value::Boolean(b),
                    wit::Scalar::DateTime(t) => Value::DateTime(datetime_from_wit(t)?),
                })
            }

            pub(crate) fn datetime_to_wit(t: &DateTime<Utc>) -> wit::Datetime {
                wit::Datetime {
                    seconds: t.timestamp(),
                    nanoseconds: t.timestamp_subsec_nanos(),
                }
            }

            pub(crate) fn datetime_from_wit(t: wit::Datetime) -> Result<DateTime<Utc>, String> {
                crate::record::date_time_from_parts(t.seconds, t.nanoseconds)
            }
        }
    };
}

/// `record-filter.include`, for a version whose interface is 0.1.0's: a function `include`
/// in that version's module, whose `FilterBindings` case is `$variant`.
macro_rules! record_filter_call {
    ($variant:ident) => {
        /// `record-filter.include`: true when the record takes part in the sync.
        pub(crate) fn include(
            loaded: &Loaded,
            pre: &FilterPre,
            live: &mut Option<Live<FilterBindings>>,
            ctx: &CallContext,
            side: Side,
            record: &Fields,
        ) -> Result<bool, PluginCallError> {
            use filter::exports::tandem::plugin::record_filter::Side as WitSide;
            let input = loaded.input(convert::fields_to_wit(record))?;
            let ctx = context(ctx);
            let side = match side {
                Side::Siebel => WitSide::Siebel,
                Side::Exchange => WitSide::Exchange,
            };
            let result = loaded.call(
                "include",
                live,
                |store| pre.instantiate(store),
                |bindings, store| {
                    let FilterBindings::$variant(bindings) = bindings else {
                        return Err(Loaded::version_mismatch());
                    };
                    bindings
                        .tandem_plugin_record_filter()
                        .call_include(store, &ctx, side, &input)
                },
            )?;
            result.map_err(|error| loaded.plugin_error(error))
        }
    };
}

/// `conflict-resolution.resolve`, for a version whose interface is 0.1.0's: a function
/// `resolve` in that version's module, whose `ConflictPolicyBindings` case is `$variant`.
macro_rules! conflict_resolution_call {
    ($variant:ident) => {
        /// `conflict-resolution.resolve`: the policy's decision.
        pub(crate) fn resolve(
            loaded: &Loaded,
            pre: &ConflictPolicyPre,
            live: &mut Option<Live<ConflictPolicyBindings>>,
            ctx: &CallContext,
            conflict: &Conflict,
        ) -> Result<Resolution, PluginCallError> {
            use conflict_policy::exports::tandem::plugin::conflict_resolution as wit_res;
            let input = wit_res::Conflict {
                base: conflict
                    .base
                    .as_ref()
                    .map(|b| loaded.input(convert::fields_to_wit(b)))
                    .transpose()?,
                siebel: loaded.input(convert::fields_to_wit(&conflict.siebel))?,
                exchange: loaded.input(convert::fields_to_wit(&conflict.exchange))?,
            };
            let ctx = context(ctx);
            let result = loaded.call(
                "resolve",
                live,
                |store| pre.instantiate(store),
                |bindings, store| {
                    let ConflictPolicyBindings::$variant(bindings) = bindings else {
                        return Err(Loaded::version_mismatch());
                    };
                    bindings
                        .tandem_plugin_conflict_resolution()
                        .call_resolve(store, &ctx, &input)
                },
            )?;
            Ok(match result.map_err(|error| loaded.plugin_error(error))? {
                wit_res::Resolution::TakeSiebel => Resolution::TakeSiebel,
                wit_res::Resolution::TakeExchange => Resolution::TakeExchange,
                wit_res::Resolution::Merged(fields) => {
                    Resolution::Merged(loaded.output(convert::fields_from_wit(fields))?)
                }
                wit_res::Resolution::KeepBoth => Resolution::KeepBoth,
                wit_res::Resolution::Defer(reason) => Resolution::Defer(reason),
            })
        }
    };
}

pub(crate) mod since_v0_1_0;
pub(crate) mod since_v0_2_0;

/// The newest version: the host imports are implemented on its types.
pub(crate) use since_v0_2_0 as latest;

/// One plugin kind's `InstancePre` and instance bindings, one case per version of the table.
macro_rules! versioned_kind {
    (
        $pre:ident, $bindings:ident, $world:ident :: $world_pre:ident, $world_ty:ident,
        $export:ident, [$($variant:ident => $module:ident),+]
    ) => {
        /// A loaded plugin of this kind, ready to instantiate, in the WIT version its
        /// component exports.
        #[derive(Clone)]
        pub(crate) enum $pre {
            $($variant($module::$world::$world_pre<PluginState>),)+
        }

        /// An instance's bindings, in its plugin's WIT version.
        pub(crate) enum $bindings {
            $($variant($module::$world::$world_ty),)+
        }

        impl $pre {
            /// The bindings of the version whose interface `export` is (one the component
            /// was found to export).
            pub(crate) fn new(
                export: &str,
                pre: InstancePre<PluginState>,
            ) -> wasmtime::Result<Self> {
                $(
                    if export == $module::$export {
                        return $module::$world::$world_pre::new(pre).map(Self::$variant);
                    }
                )+
                Err(wasmtime::format_err!("no WIT version of the host exports `{export}`"))
            }

            pub(crate) fn instantiate(
                &self,
                store: &mut Store<PluginState>,
            ) -> wasmtime::Result<$bindings> {
                Ok(match self {
                    $(Self::$variant(pre) => $bindings::$variant(pre.instantiate(store)?),)+
                })
            }
        }
    };
}

/// Everything made from the list of versions, newest first.
macro_rules! wit_versions {
    ($($variant:ident => $module:ident),+ $(,)?) => {
        /// Adds every version's host imports to `linker`: plugins built for an older version
        /// keep loading.
        pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
            $($module::add_to_linker(linker)?;)+
            Ok(())
        }

        /// Whether this host has bindings for plugins built against WIT API `version` (a
        /// package manifest's `api`).
        pub fn loads_api_version(version: &semver::Version) -> bool {
            [$((&$module::MIN_VERSION, &$module::MAX_VERSION),)+]
                .into_iter()
                .any(|(min, max)| min <= version && version <= max)
        }

        /// The interface a mapper may export, one per version, newest first.
        pub(crate) const MAPPING_EXPORTS: &[&str] = &[$($module::MAPPING_EXPORT,)+];
        /// The interface a filter may export, one per version, newest first.
        pub(crate) const FILTER_EXPORTS: &[&str] = &[$($module::FILTER_EXPORT,)+];
        /// The interface a conflict policy may export, one per version, newest first.
        pub(crate) const CONFLICT_EXPORTS: &[&str] = &[$($module::CONFLICT_EXPORT,)+];

        versioned_kind!(
            MapperPre, MapperBindings, mapper::MapperPre, Mapper, MAPPING_EXPORT,
            [$($variant => $module),+]
        );
        versioned_kind!(
            FilterPre, FilterBindings, filter::FilterPre, Filter, FILTER_EXPORT,
            [$($variant => $module),+]
        );
        versioned_kind!(
            ConflictPolicyPre, ConflictPolicyBindings, conflict_policy::ConflictPolicyPre,
            ConflictPolicy, CONFLICT_EXPORT, [$($variant => $module),+]
        );

        /// Maps `records` through a mapper, in its version's way.
        pub(crate) fn map_batch<'a>(
            loaded: &Loaded,
            pre: &MapperPre,
            live: &mut Option<Live<MapperBindings>>,
            ctx: &CallContext,
            records: impl IntoIterator<Item = &'a Fields>,
            direction: Direction,
        ) -> Result<Vec<Result<Fields, PluginCallError>>, PluginCallError> {
            match pre {
                $(MapperPre::$variant(_) => {
                    $module::map_batch(loaded, pre, live, ctx, records, direction)
                })+
            }
        }

        /// Asks a filter about `record`, in its version's way.
        pub(crate) fn include(
            loaded: &Loaded,
            pre: &FilterPre,
            live: &mut Option<Live<FilterBindings>>,
            ctx: &CallContext,
            side: Side,
            record: &Fields,
        ) -> Result<bool, PluginCallError> {
            match pre {
                $(FilterPre::$variant(_) => $module::include(loaded, pre, live, ctx, side, record),)+
            }
        }

        /// Asks a conflict policy about `conflict`, in its version's way.
        pub(crate) fn resolve(
            loaded: &Loaded,
            pre: &ConflictPolicyPre,
            live: &mut Option<Live<ConflictPolicyBindings>>,
            ctx: &CallContext,
            conflict: &Conflict,
        ) -> Result<Resolution, PluginCallError> {
            match pre {
                $(ConflictPolicyPre::$variant(_) => $module::resolve(loaded, pre, live, ctx, conflict),)+
            }
        }
    };
}

wit_versions! {
    V0_2 => since_v0_2_0,
    V0_1 => since_v0_1_0,
}

#[cfg(test)]
mod tests;
