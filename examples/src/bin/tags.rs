//! `tags`: vSphere tagging over the Automation REST API, against the embedded simulator by
//! default or a vCenter with `--url`.
//!
//! ```text
//! tags [--url URL] [--insecure] COMMAND [-- COMMAND ...]
//!
//!   category create NAME [--single|--multiple] [--type TYPE]...
//!   tag create NAME --category CATEGORY          (CATEGORY: name or id)
//!   attach TAG --vm VM                           (TAG: name or id; VM: moref or path/name)
//!   ls                                           (categories, their tags, tagged objects)
//! ```
//!
//! The URL is the usual one (`https://user:pass@vc.example.com`, or `VSPHERE_URL`,
//! `VSPHERE_USERNAME`, `VSPHERE_PASSWORD`, `VSPHERE_INSECURE`). Without it, an embedded
//! simulator lives as long as the command, so commands chain with `--` to tell a story:
//!
//! ```text
//! tags category create env --single --type VirtualMachine -- tag create prod --category env \
//!      -- attach prod --vm /DC0/vm/DC0_H0_VM0 -- ls
//! ```

use std::process::ExitCode;

use vsphere_client::client::ConnectOptions;
use vsphere_client::rest::{Cardinality, CategorySpec, ObjectId, RestClient, TagSpec, VmFilter};

type BoxError = Box<dyn std::error::Error>;

const USAGE: &str = "usage: tags [--url URL] [--insecure] COMMAND [-- COMMAND ...]
  category create NAME [--single|--multiple] [--type TYPE]...
  tag create NAME --category CATEGORY
  attach TAG --vm VM
  ls";

/// One parsed command.
#[derive(Debug, PartialEq)]
enum Command {
    CreateCategory {
        name: String,
        cardinality: Cardinality,
        types: Vec<String>,
    },
    CreateTag {
        name: String,
        category: String,
    },
    Attach {
        tag: String,
        vm: String,
    },
    List,
}

/// The whole command line.
#[derive(Debug, PartialEq)]
struct Args {
    url: Option<String>,
    insecure: bool,
    commands: Vec<Command>,
}

fn parse_command(words: &[String]) -> Result<Command, String> {
    let flag = |name: &str| -> Result<Option<String>, String> {
        match words.iter().position(|w| w == name) {
            None => Ok(None),
            Some(i) => words
                .get(i + 1)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("{name} needs a value")),
        }
    };
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["category", "create", name, rest @ ..] => {
            let mut types = Vec::new();
            let mut cardinality = Cardinality::Multiple;
            let mut i = 0;
            while i < rest.len() {
                match rest[i] {
                    "--single" => cardinality = Cardinality::Single,
                    "--multiple" => cardinality = Cardinality::Multiple,
                    "--type" => {
                        i += 1;
                        types.push((*rest.get(i).ok_or("--type needs a value")?).to_owned());
                    }
                    other => return Err(format!("unknown option {other:?}")),
                }
                i += 1;
            }
            Ok(Command::CreateCategory {
                name: (*name).to_owned(),
                cardinality,
                types,
            })
        }
        ["tag", "create", name, ..] => Ok(Command::CreateTag {
            name: (*name).to_owned(),
            category: flag("--category")?.ok_or("tag create needs --category")?,
        }),
        ["attach", tag, ..] => Ok(Command::Attach {
            tag: (*tag).to_owned(),
            vm: flag("--vm")?.ok_or("attach needs --vm")?,
        }),
        ["ls"] => Ok(Command::List),
        _ => Err(format!("unknown command {:?}", words.join(" "))),
    }
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut url = None;
    let mut insecure = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--url" => {
                url = Some(args.get(i + 1).cloned().ok_or("--url needs a value")?);
                i += 2;
            }
            "--insecure" => {
                insecure = true;
                i += 1;
            }
            _ => break,
        }
    }
    let commands = args[i..]
        .split(|a| a == "--")
        .map(parse_command)
        .collect::<Result<Vec<_>, _>>()?;
    if commands.is_empty() {
        return Err("no command".to_owned());
    }
    Ok(Args {
        url,
        insecure,
        commands,
    })
}

/// The id of the category `key` (an id, or a name).
async fn category_id(rest: &RestClient, key: &str) -> Result<String, BoxError> {
    for id in rest.list_categories().await? {
        if id == key || rest.get_category(&id).await?.name == key {
            return Ok(id);
        }
    }
    Err(format!("no category {key:?}").into())
}

/// The id of the tag `key` (an id, or a name; a name must be unique across categories).
async fn tag_id(rest: &RestClient, key: &str) -> Result<String, BoxError> {
    let mut found = Vec::new();
    for id in rest.list_tags().await? {
        if id == key {
            return Ok(id);
        }
        if rest.get_tag(&id).await?.name == key {
            found.push(id);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("no tag {key:?}").into()),
        n => Err(format!("{n} tags are named {key:?}: give the id").into()),
    }
}

/// The VM `key` names: a managed object id (`vm-42`), or an inventory path or name whose last
/// part is the VM's name (`/DC0/vm/DC0_H0_VM0`).
async fn vm_id(rest: &RestClient, key: &str) -> Result<ObjectId, BoxError> {
    if key.starts_with("vm-") {
        return Ok(ObjectId::vm(key));
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    let vms = rest.list_vms(&VmFilter::new().names(name)).await?;
    match vms.as_slice() {
        [one] => Ok(ObjectId::vm(&one.vm)),
        [] => Err(format!("no VM named {name:?}").into()),
        _ => Err(format!("{} VMs are named {name:?}: give the moref", vms.len()).into()),
    }
}

async fn list(rest: &RestClient) -> Result<(), BoxError> {
    let categories = rest.list_categories().await?;
    if categories.is_empty() {
        println!("(no categories)");
    }
    for cid in categories {
        let c = rest.get_category(&cid).await?;
        let types = if c.associable_types.is_empty() {
            "any type".to_owned()
        } else {
            c.associable_types.join(", ")
        };
        println!("{} ({}, {types})", c.name, c.cardinality);
        for tid in rest.list_tags_for_category(&cid).await? {
            let t = rest.get_tag(&tid).await?;
            let objects: Vec<String> = rest
                .list_attached_objects(&tid)
                .await?
                .iter()
                .map(ToString::to_string)
                .collect();
            println!("  {}: {}", t.name, objects.join(" "));
        }
    }
    Ok(())
}

async fn execute(rest: &RestClient, command: &Command) -> Result<(), BoxError> {
    match command {
        Command::CreateCategory {
            name,
            cardinality,
            types,
        } => {
            let mut spec = CategorySpec::new(name.as_str(), cardinality.clone());
            for t in types {
                spec = spec.associable_type(t.as_str());
            }
            let id = rest.create_category(&spec).await?;
            println!("category {name}: {id}");
        }
        Command::CreateTag { name, category } => {
            let cid = category_id(rest, category).await?;
            let id = rest.create_tag(&TagSpec::new(name.as_str(), cid)).await?;
            println!("tag {name}: {id}");
        }
        Command::Attach { tag, vm } => {
            let tid = tag_id(rest, tag).await?;
            let object = vm_id(rest, vm).await?;
            rest.attach(&tid, &object).await?;
            println!("attached {tag} to {object}");
        }
        Command::List => list(rest).await?,
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut sim = None;
    let options = match (&args.url, std::env::var("VSPHERE_URL")) {
        (Some(url), _) => ConnectOptions::new(url)?.insecure(args.insecure),
        (None, Ok(_)) => ConnectOptions::from_env()?.insecure(args.insecure),
        (None, Err(_)) => {
            let s = vsphere_sim::Simulator::builder().start().await?;
            let o = ConnectOptions::new(&s.url_with_credentials())?;
            eprintln!("(embedded simulator at {})", s.url());
            sim = Some(s);
            o
        }
    };
    let rest = RestClient::connect(options).await?;
    eprintln!("(REST style: {:?})", rest.style());
    let mut result = Ok(());
    for c in &args.commands {
        result = execute(&rest, c).await;
        if result.is_err() {
            break;
        }
    }
    rest.logout().await?;
    if let Some(s) = sim {
        s.stop().await;
    }
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tags: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tags: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn chained_commands_parse() {
        let a = parse(&words(
            "--url vc1 category create env --single --type VirtualMachine -- tag create prod \
             --category env -- attach prod --vm /DC0/vm/x -- ls",
        ))
        .unwrap();
        assert_eq!(a.url.as_deref(), Some("vc1"));
        assert_eq!(
            a.commands,
            [
                Command::CreateCategory {
                    name: "env".into(),
                    cardinality: Cardinality::Single,
                    types: vec!["VirtualMachine".into()],
                },
                Command::CreateTag {
                    name: "prod".into(),
                    category: "env".into(),
                },
                Command::Attach {
                    tag: "prod".into(),
                    vm: "/DC0/vm/x".into(),
                },
                Command::List,
            ]
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        for bad in [
            "",
            "tag create x",
            "attach t",
            "frobnicate",
            "category create x --weird",
        ] {
            assert!(parse(&words(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_story_runs_against_the_embedded_simulator() {
        let args = parse(&words(
            "category create env --single --type VirtualMachine -- tag create prod --category env \
             -- attach prod --vm /DC0/vm/DC0_H0_VM0 -- ls",
        ))
        .unwrap();
        run(args).await.unwrap();
        let bad = parse(&words("attach nope --vm DC0_H0_VM0")).unwrap();
        let e = run(bad).await.unwrap_err();
        assert!(e.to_string().contains("no tag \"nope\""), "{e}");
    }
}
