//! `stigmer apply`, `stigmer get`, `stigmer delete`.

use super::execution_output::sort_by_creation;
use super::output::{decode, format_resources, read_offline};
use super::sources::{Inputs, read_inputs};
use super::table::render_table;
use crate::cli::{ApplyArgs, DeleteArgs, GetArgs};
use crate::failure::{EXIT_INVALID_INPUT, Failure, status_failure};
use crate::printer::{Printer, print_data};
use std::path::PathBuf;
use std::process::ExitCode;
use stigmer_client::home::is_locked;
use stigmer_proto::resources::v1::{ApplyRequest, DeleteRequest, GetRequest, ListRequest};
use stigmer_resources::{
    Kind, ManifestError, ParsedDocument, PlanError, Resource, locate_plan_errors,
    parse_sources_with, plan_apply,
};
use stigmer_store::{SqliteStore, Store, StoreLookup};

pub async fn apply(args: ApplyArgs) -> Result<ExitCode, Failure> {
    let home = super::invocation::home()?;
    let documents = read_documents(&args.files, args.name.as_deref())?;
    let resources: Vec<Resource> = documents.iter().map(|d| d.resource.clone()).collect();

    let running = is_locked(&home.lock_file());
    let (results, errors): (ApplyResults, Vec<PlanError>) = if !running && args.dry_run {
        plan_offline(&home, &resources)?
    } else {
        let mut client = super::server::ensure_running(&home).await?;
        let request = ApplyRequest {
            resources_json: resources
                .iter()
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .collect(),
            dry_run: args.dry_run,
        };
        let response = client
            .resources()
            .apply(request)
            .await
            .map_err(|status| apply_failure(status, args.dry_run, &args.files))?
            .into_inner();
        let errors: Vec<PlanError> = response
            .errors
            .into_iter()
            .map(|error| PlanError {
                index: error.index as usize,
                path: error.path,
                message: error.message,
                other_index: error.other_index.map(|other| other as usize),
            })
            .collect();
        let results = response
            .results
            .into_iter()
            .map(|result| (result.kind, result.name, result.action))
            .collect();
        (results, errors)
    };
    if !errors.is_empty() {
        return Err(invalid(locate_plan_errors(&documents, &errors)));
    }
    if args.json {
        let items: Vec<serde_json::Value> = results
            .iter()
            .map(|(kind, name, action)| {
                serde_json::json!({"kind": kind, "name": name, "action": action})
            })
            .collect();
        print_data(&serde_json::Value::Array(items).to_string());
    } else {
        let mut table = vec![["KIND".to_owned(), "NAME".to_owned(), "ACTION".to_owned()]];
        for (kind, name, action) in &results {
            let action = if args.dry_run {
                format!("{action} (dry run)")
            } else {
                action.clone()
            };
            table.push([kind.clone(), name.clone(), action]);
        }
        print_data(&render_table(&table));
    }
    if args.dry_run {
        Printer::stderr().line("dry run: nothing was written");
    }
    Ok(ExitCode::SUCCESS)
}

/// `(kind, name, action)` per document.
type ApplyResults = Vec<(String, String, String)>;

/// Plans against the store file directly (read-only) when no daemon runs.
fn plan_offline(
    home: &stigmer_config::StigmerHome,
    resources: &[Resource],
) -> Result<(ApplyResults, Vec<PlanError>), Failure> {
    let store: Box<dyn Store> = match SqliteStore::open_if_exists(&home.store_file())
        .map_err(|error| Failure::new(error.to_string()))?
    {
        Some(store) => Box::new(store),
        None => Box::new(stigmer_store::MemoryStore::default()),
    };
    let planned = plan_apply(
        resources,
        &StoreLookup(store.as_ref()),
        &stigmer_resources::now(),
    )
    .map_err(|error| Failure::new(error.to_string()))?;
    Ok(match planned {
        Ok(planned) => (
            planned
                .into_iter()
                .map(|p| {
                    (
                        p.resource.kind.as_str().to_owned(),
                        p.resource.metadata.name,
                        p.action.as_str().to_owned(),
                    )
                })
                .collect(),
            Vec::new(),
        ),
        Err(errors) => (Vec::new(), errors),
    })
}

fn invalid(errors: Vec<ManifestError>) -> Failure {
    let count = errors.len();
    Failure::new(format!(
        "{count} problem{} found; nothing was applied",
        if count == 1 { "" } else { "s" }
    ))
    .with_code(EXIT_INVALID_INPUT)
    .with_details(errors.iter().map(ToString::to_string).collect())
}

/// Reads every `-f` argument (see [`super::sources`]) and parses the manifests; `name` is
/// `--name`, which names the workflow of a single plain Serverless Workflow file.
fn read_documents(paths: &[PathBuf], name: Option<&str>) -> Result<Vec<ParsedDocument>, Failure> {
    let Inputs { sources, skills } =
        read_inputs(paths, &mut std::io::stdin().lock()).map_err(|problems| {
            let count = problems.len();
            Failure::new(format!(
                "{count} problem{} found; nothing was applied",
                if count == 1 { "" } else { "s" }
            ))
            .with_code(EXIT_INVALID_INPUT)
            .with_details(problems)
        })?;
    if sources.is_empty() && skills.is_empty() {
        return Err(Failure::new("no manifests found")
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(
                "pass YAML files, folders holding them, or a skill folder with SKILL.md".into(),
            )));
    }
    let mut documents = if sources.is_empty() {
        Vec::new()
    } else {
        parse_sources_with(&sources, name).map_err(invalid)?
    };
    for (file, resource) in skills {
        documents.push(ParsedDocument {
            file,
            index: 1,
            first_line: 1,
            text: String::new(),
            resource,
            serverless_workflow: false,
        });
    }
    if name.is_some() {
        let single_workflow =
            matches!(documents.as_slice(), [document] if document.serverless_workflow);
        if !single_workflow {
            return Err(Failure::new(format!(
                "--name applies to a single plain Serverless Workflow file; this apply holds {} \
                 document{}{}",
                documents.len(),
                if documents.len() == 1 { "" } else { "s" },
                if documents.len() == 1 {
                    " that is a manifest (with kind)"
                } else {
                    ""
                }
            ))
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(
                "name manifests in their metadata.name; use --name only with one workflow file \
                 (a document with `document.dsl`)"
                    .into(),
            )));
        }
    }
    Ok(documents)
}

fn parse_kind(text: &str) -> Result<Kind, Failure> {
    Kind::from_cli(text).ok_or_else(|| {
        let hint = Kind::suggest_cli(text)
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        Failure::new(format!("unknown kind {text:?}"))
            .with_code(EXIT_INVALID_INPUT)
            .with_hint(Some(format!(
                "{hint}kinds: agent, mcpserver, skill, environment, workflow, session, execution"
            )))
    })
}

/// An apply whose answer never came: when the connection dropped or the daemon went away
/// after the request was sent, the documents may or may not have been written (all or none),
/// so the failure says so and how to find out, instead of a bare "transport error".
fn apply_failure(status: tonic::Status, dry_run: bool, files: &[PathBuf]) -> Failure {
    let lost = matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
    );
    if !lost || dry_run {
        return status_failure(status);
    }
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Failure::new(
        "the connection to the daemon was lost during the apply: its outcome is unknown (all \
         documents were written, or none)",
    )
    .with_details(vec![format!("cause: {}", status.message())])
    .with_hint(Some(format!(
        "check with `stigmer apply -f {} --dry-run` (what still differs) or `stigmer get <kind>`; \
         applying again is safe: what was written shows as unchanged",
        files.join(" -f ")
    )))
}

pub async fn get(args: GetArgs) -> Result<ExitCode, Failure> {
    let kind = parse_kind(&args.kind)?;
    let home = super::invocation::home()?;
    let mut resources: Vec<Resource> = if is_locked(&home.lock_file()) {
        let mut client = super::server::connect(&home).await?;
        match &args.name {
            Some(name) => {
                let response = client
                    .resources()
                    .get(GetRequest {
                        kind: kind.as_str().to_owned(),
                        name: name.clone(),
                    })
                    .await
                    .map_err(status_failure)?;
                vec![decode(&response.into_inner().resource_json)?]
            }
            None => client
                .resources()
                .list(ListRequest {
                    kind: kind.as_str().to_owned(),
                })
                .await
                .map_err(status_failure)?
                .into_inner()
                .resources_json
                .iter()
                .map(|json| decode(json))
                .collect::<Result<_, _>>()?,
        }
    } else {
        // Reading needs no daemon: the store is a file.
        read_offline(&home, kind, args.name.as_deref())?
    };
    if kind == Kind::AgentExecution {
        sort_by_creation(&mut resources);
    }
    if let Some(output) = format_resources(kind, &resources, args.name.is_some(), args.output)? {
        print_data(&output);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(args: DeleteArgs) -> Result<ExitCode, Failure> {
    let kind = parse_kind(&args.kind)?;
    let home = super::invocation::home()?;
    let mut client = super::server::ensure_running(&home).await?;
    client
        .resources()
        .delete(DeleteRequest {
            kind: kind.as_str().to_owned(),
            name: args.name.clone(),
            force: args.force,
        })
        .await
        .map_err(status_failure)?;
    print_data(&format!(
        "{} \"{}\" deleted",
        kind.as_str().to_ascii_lowercase(),
        args.name
    ));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_apply_says_the_outcome_is_unknown() {
        let files = [PathBuf::from("agents.yaml")];
        for status in [
            tonic::Status::unavailable("transport error"),
            tonic::Status::unknown("h2 protocol error: connection reset"),
            tonic::Status::cancelled("operation was canceled"),
        ] {
            let failure = apply_failure(status, false, &files);
            assert!(
                failure.message.contains("its outcome is unknown"),
                "{failure:?}"
            );
            let hint = failure.hint.unwrap();
            assert!(
                hint.contains("stigmer apply -f agents.yaml --dry-run"),
                "{hint}"
            );
            assert_eq!(failure.code, 1);
        }
        // A refusal is not a lost connection: its own message and exit code stay.
        let refused = apply_failure(
            tonic::Status::invalid_argument("spec too large"),
            false,
            &files,
        );
        assert_eq!(refused.message, "spec too large");
        assert_eq!(refused.code, EXIT_INVALID_INPUT);
        // A dry run wrote nothing whatever happened.
        let dry = apply_failure(tonic::Status::unavailable("transport error"), true, &files);
        assert_eq!(dry.message, "transport error");
    }
}
