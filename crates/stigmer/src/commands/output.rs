//! Output shared by the resource and execution commands: resources decoded from the server or
//! read from the store file when no daemon runs, and formatted as a table, JSON or YAML.

use super::execution_output::execution_table;
use super::table::render_table;
use crate::cli::OutputFormat;
use crate::failure::Failure;
use crate::printer::Printer;
use stigmer_resources::{Kind, Resource};
use stigmer_store::{SqliteStore, Store};

/// `get` output: one resource (`single`) or a list, as a table, JSON (a list is
/// `{"items": […]}`) or YAML. `None` when a table would be empty (that was said on stderr).
pub(super) fn format_resources(
    kind: Kind,
    resources: &[Resource],
    single: bool,
    format: OutputFormat,
) -> Result<Option<String>, Failure> {
    let output = match format {
        OutputFormat::Json => {
            let value = match resources {
                [resource] if single => serde_json::to_value(resource),
                _ => {
                    serde_json::to_value(resources).map(|items| serde_json::json!({"items": items}))
                }
            };
            serde_json::to_string_pretty(&value.map_err(|e| Failure::new(e.to_string()))?)
                .map_err(|e| Failure::new(e.to_string()))?
        }
        OutputFormat::Yaml => {
            let result = match resources {
                [resource] if single => serde_yaml_ng::to_string(resource),
                _ => serde_yaml_ng::to_string(&serde_json::json!({"items": resources})),
            };
            result.map_err(|e| Failure::new(e.to_string()))?
        }
        OutputFormat::Table => {
            if resources.is_empty() {
                Printer::stderr().line(&format!("no {} found", kind.cli_names()[1]));
                return Ok(None);
            }
            if matches!(kind, Kind::AgentExecution | Kind::WorkflowExecution) {
                return Ok(Some(execution_table(resources, chrono::Utc::now())));
            }
            let mut table = vec![[
                "NAME".to_owned(),
                "ID".to_owned(),
                "GENERATION".to_owned(),
                "UPDATED".to_owned(),
            ]];
            for resource in resources {
                let metadata = &resource.metadata;
                table.push([
                    metadata.name.clone(),
                    metadata.id.clone().unwrap_or_default(),
                    metadata
                        .generation
                        .map(|g| g.to_string())
                        .unwrap_or_default(),
                    metadata.updated_at.clone().unwrap_or_default(),
                ]);
            }
            render_table(&table)
        }
    };
    Ok(Some(output))
}

pub(super) fn read_offline(
    home: &stigmer_config::StigmerHome,
    kind: Kind,
    name: Option<&str>,
) -> Result<Vec<Resource>, Failure> {
    let store = SqliteStore::open_if_exists(&home.store_file())
        .map_err(|error| Failure::new(error.to_string()))?;
    let Some(store) = store else {
        return match name {
            Some(name) => Err(not_found(kind, name)),
            None => Ok(Vec::new()),
        };
    };
    let store_failure = |error: stigmer_store::StoreError| Failure::new(error.to_string());
    match name {
        Some(name) => match store.get(kind, name).map_err(store_failure)? {
            Some(resource) => Ok(vec![resource.masked()]),
            None => Err(not_found(kind, name)),
        },
        None => Ok(store
            .list(kind)
            .map_err(store_failure)?
            .iter()
            .map(Resource::masked)
            .collect()),
    }
}

fn not_found(kind: Kind, name: &str) -> Failure {
    Failure::new(format!("{} \"{name}\" not found", kind.cli_names()[0]))
}

pub(super) fn decode(json: &str) -> Result<Resource, Failure> {
    serde_json::from_str(json)
        .map_err(|error| Failure::new(format!("the server sent an invalid resource: {error}")))
}
