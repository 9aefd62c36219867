//! Dynamic config changes (IncrementalAlterConfigs, AlterConfigs) planned on the controller:
//! the target resolved against the image, each operation validated (topic configs, or the
//! broker settings that may change at run time), list operations worked out, and one
//! `ConfigChange` record produced. Pure.

use std::collections::BTreeMap;

use super::admin::{AdminError, ConfigOp, ConfigTarget};
use crate::config::kafka::LIST;
use crate::config::{
    is_dynamic_broker_setting, topic_config_type, validate_dynamic_broker_setting,
    validate_topic_config,
};
use crate::metadata::{ConfigResource, MetadataImage, MetadataRecord};
use crate::types::NodeId;

type Validator = fn(&str, &str) -> Result<(), String>;

/// Validates config operations against `image` and turns them into the record to write. Pure.
pub fn plan_config_change(
    image: &MetadataImage,
    target: &ConfigTarget,
    replace: bool,
    ops: &[ConfigOp],
) -> Result<MetadataRecord, AdminError> {
    let (resource, current, validate): (_, _, Validator) = match target {
        ConfigTarget::Topic(name) => {
            let t = image
                .topic(name)
                .ok_or_else(|| AdminError::UnknownTopic(name.clone()))?;
            (
                ConfigResource::Topic(t.id),
                t.configs.clone(),
                validate_topic_config,
            )
        }
        ConfigTarget::Broker(id) => {
            if !id.is_empty() && id.parse::<NodeId>().is_err() {
                return Err(AdminError::InvalidRequest(format!(
                    "`{id}` is not a broker id (or \"\" for the cluster default)"
                )));
            }
            let current = image.broker_configs.get(id).cloned().unwrap_or_default();
            (
                ConfigResource::Broker(id.clone()),
                current,
                validate_dynamic_broker_setting,
            )
        }
    };
    let is_list = |name: &str| match target {
        ConfigTarget::Topic(_) => topic_config_type(name) == LIST,
        ConfigTarget::Broker(_) => false,
    };
    let mut set: BTreeMap<String, String> = BTreeMap::new();
    let mut delete = Vec::new();
    for op in ops {
        let name = match op {
            ConfigOp::Set(n, _)
            | ConfigOp::Delete(n)
            | ConfigOp::Append(n, _)
            | ConfigOp::Subtract(n, _) => n,
        };
        if let ConfigTarget::Broker(_) = target {
            if !is_dynamic_broker_setting(name) {
                return Err(AdminError::InvalidRequest(format!(
                    "`{name}` cannot be changed without a restart (read-only)"
                )));
            }
        }
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let value = match op {
            ConfigOp::Set(_, v) => v.clone(),
            ConfigOp::Delete(_) => {
                delete.push(name.clone());
                set.remove(name);
                continue;
            }
            ConfigOp::Append(_, v) | ConfigOp::Subtract(_, v) => {
                if !is_list(name) {
                    return Err(AdminError::InvalidConfig(format!(
                        "`{name}` is not a list: APPEND and SUBTRACT do not apply"
                    )));
                }
                let base = set
                    .get(name)
                    .or_else(|| current.get(name))
                    .cloned()
                    .unwrap_or_default();
                let mut items = list(&base);
                for item in list(v) {
                    let has = items.contains(&item);
                    match op {
                        ConfigOp::Append(..) if !has => items.push(item),
                        ConfigOp::Subtract(..) => items.retain(|i| *i != item),
                        _ => {}
                    }
                }
                items.join(",")
            }
        };
        validate(name, &value).map_err(AdminError::InvalidConfig)?;
        delete.retain(|d| d != name);
        set.insert(name.clone(), value);
    }
    Ok(MetadataRecord::ConfigChange {
        resource,
        replace,
        set,
        delete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TopicId;

    fn image() -> MetadataImage {
        MetadataImage::default()
            .apply(&MetadataRecord::CreateTopic {
                name: "t".into(),
                id: TopicId(uuid::Uuid::from_u128(1)),
                assignments: vec![vec![1]],
                configs: BTreeMap::from([("cleanup.policy".into(), "delete".into())]),
            })
            .0
    }

    fn plan(target: ConfigTarget, ops: &[ConfigOp]) -> Result<MetadataRecord, AdminError> {
        plan_config_change(&image(), &target, false, ops)
    }

    fn topic() -> ConfigTarget {
        ConfigTarget::Topic("t".into())
    }

    #[test]
    fn set_delete_and_list_operations_become_one_record() {
        let record = plan(
            topic(),
            &[
                ConfigOp::Set("retention.ms".into(), "1000".into()),
                ConfigOp::Delete("flush.ms".into()),
                ConfigOp::Append("cleanup.policy".into(), "delete".into()),
            ],
        )
        .expect("valid");
        let MetadataRecord::ConfigChange { set, delete, .. } = record else {
            panic!("{record:?}")
        };
        assert_eq!(set["retention.ms"], "1000");
        assert_eq!(
            set["cleanup.policy"], "delete",
            "appending a present item adds nothing"
        );
        assert_eq!(delete, ["flush.ms"]);
    }

    #[test]
    fn invalid_names_values_and_targets_are_refused_with_kafkas_errors() {
        let bad = |target, op| plan(target, &[op]).expect_err("refused");
        assert!(matches!(
            bad(topic(), ConfigOp::Set("no.such".into(), "1".into())),
            AdminError::InvalidConfig(_)
        ));
        assert!(matches!(
            bad(topic(), ConfigOp::Set("retention.ms".into(), "soon".into())),
            AdminError::InvalidConfig(_)
        ));
        assert!(matches!(
            bad(topic(), ConfigOp::Append("retention.ms".into(), "1".into())),
            AdminError::InvalidConfig(_)
        ));
        assert!(matches!(
            bad(
                ConfigTarget::Topic("nope".into()),
                ConfigOp::Set("retention.ms".into(), "1".into())
            ),
            AdminError::UnknownTopic(_)
        ));
        let broker = || ConfigTarget::Broker(String::new());
        assert!(matches!(
            bad(broker(), ConfigOp::Set("listeners".into(), "x".into())),
            AdminError::InvalidRequest(_)
        ));
        assert!(matches!(
            bad(
                ConfigTarget::Broker("one".into()),
                ConfigOp::Delete("log.retention.ms".into())
            ),
            AdminError::InvalidRequest(_)
        ));
        assert!(plan(
            broker(),
            &[ConfigOp::Set("log.retention.ms".into(), "5".into())]
        )
        .is_ok());
    }
}
