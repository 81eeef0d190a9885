//! `nas`: train, evaluate and measure weight-sharing supernets whose spaces and training policies
//! are plugins. Run `nas --help` for the commands.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use nas_host::commands;

#[derive(Parser)]
#[command(
    name = "nas",
    version,
    about = "One-shot neural architecture search on libtorch, with plugin search spaces and training policies"
)]
struct Cli {
    /// Extra folder to search for plugin libraries (repeatable; searched before NAS_PLUGIN_PATH
    /// and the folder beside the nas binary).
    #[arg(long = "plugin-path", global = true, value_name = "DIR")]
    plugin_path: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArgs {
    /// TOML config file (defaults apply to everything it leaves out).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config value, e.g. --set train.epochs=2 --set space.config.channels=8.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// How subnets of a trained supernet are evaluated (`nas eval`, `nas rank`).
#[derive(Args, Clone)]
struct SubnetEvalArgs {
    /// BN policy: batch-stats, recalibrate or running (default: the run's eval.bn).
    #[arg(long)]
    bn: Option<String>,
    /// Training batches for `recalibrate` (default: the run's eval.calib_batches).
    #[arg(long)]
    calib_batches: Option<usize>,
    /// Split: test or holdout.
    #[arg(long, default_value = "test")]
    split: String,
}

#[derive(Subcommand)]
enum Command {
    /// Train a supernet.
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// Continue the run in this folder from its latest checkpoint (uses its config.toml).
        #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
        resume: Option<PathBuf>,
        /// Stop after this many steps of this invocation, writing a checkpoint (resume later with
        /// --resume).
        #[arg(long, value_name = "N")]
        stop_after_steps: Option<u64>,
    },
    /// Evaluate subnets of a trained supernet on the test (or held-out) split.
    Eval {
        /// Run folder written by `nas train`.
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// Arch in the space's text form or as a JSON list of choices (repeatable).
        #[arg(long, required = true)]
        arch: Vec<String>,
        #[command(flatten)]
        subnet_eval: SubnetEvalArgs,
        /// Also write the split's images, labels and this arch's logits (one --arch only) to a
        /// safetensors file, e.g. to compare an exported module with the supernet.
        #[arg(long, value_name = "FILE")]
        save_logits: Option<PathBuf>,
    },
    /// Exact MACs ("FLOPs") and parameters of a subnet.
    Complexity {
        #[command(flatten)]
        config: ConfigArgs,
        /// Space name (default: the config's space.name).
        #[arg(long)]
        space: Option<String>,
        /// Arch in the space's text form or as a JSON list of choices (repeatable).
        #[arg(long, required = true)]
        arch: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List or describe plugins on the search path.
    Plugins {
        #[command(subcommand)]
        action: PluginsAction,
    },
    /// Print the resolved config (defaults + file + overrides) as TOML.
    Config {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// The main job on the built-in default: train an NB201 supernet on Fashion-MNIST with uniform
    /// sampling, then evaluate a few subnets.
    Demo {
        /// Parent folder of the run folder.
        #[arg(long, default_value = "runs")]
        out_dir: PathBuf,
        /// Run name.
        #[arg(long, default_value = "demo")]
        name: String,
        /// Override a config value of the demo run.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Search a trained supernet (evolutionary or random) under complexity budgets, on its
    /// held-out split.
    Search {
        #[command(flatten)]
        options: nas_host::searching::SearchOptions,
    },
    /// Export a subnet of a trained supernet: weights (safetensors), a TorchScript module checked
    /// against the supernet, and a manifest.
    Export {
        /// Run folder written by `nas train`.
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// Arch in the space's text form, as a JSON list of choices, or @best.json from a search
        /// (its first entry).
        #[arg(long)]
        arch: String,
        /// Output folder (default: <run>/export/<choices>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// BN statistics to freeze: `recalibrate` (for this arch) or `running` (as trained).
        /// Default: the run's [eval] policy, with batch-stats exported as recalibrate.
        #[arg(long, value_name = "POLICY")]
        bn: Option<String>,
        /// Calibration batches for `recalibrate` (default: the run's [eval] calib_batches).
        #[arg(long, value_name = "K")]
        calib_batches: Option<usize>,
    },
    /// Train subnets from scratch (stand-alone) and record their test accuracy as ground truth.
    Retrain {
        #[command(flatten)]
        config: ConfigArgs,
        /// Arch in the space's text form or as a JSON list of choices (repeatable).
        #[arg(long)]
        arch: Vec<String>,
        /// File with one arch per line (blank lines and `#` comments ignored).
        #[arg(long, value_name = "FILE")]
        archs_file: Option<PathBuf>,
        /// Seeds, comma-separated: one training run per arch and seed.
        #[arg(long, default_value = "0", value_delimiter = ',')]
        seeds: Vec<u64>,
        /// Ground-truth file (JSON lines) the accuracies are added to.
        #[arg(long, value_name = "FILE")]
        ground_truth: PathBuf,
    },
    /// Correlate a supernet's ranking of subnets with ground truth (Kendall tau-b, Spearman rho).
    Rank {
        /// Run folder written by `nas train`.
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// A `nas retrain` file, or nb201:PATH/TO/table.csv[:cifar10|cifar100|imagenet16].
        #[arg(long, value_name = "SPEC")]
        ground_truth: String,
        /// Arch to rank (repeatable; default with a retrain file: all of its archs).
        #[arg(long)]
        arch: Vec<String>,
        /// File with one arch per line.
        #[arg(long, value_name = "FILE")]
        archs_file: Option<PathBuf>,
        #[command(flatten)]
        subnet_eval: SubnetEvalArgs,
        /// k of the top-k overlap.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
    },
    /// Measure training speed (steps/s and host overhead) on synthetic data.
    Bench {
        #[command(flatten)]
        options: commands::BenchOptions,
    },
    /// Run a command as N processes of one data-parallel run on this machine (what torchrun
    /// --nproc-per-node N --no-python does), e.g. `nas launch -n 2 -- train --config run.toml`.
    Launch {
        /// Number of processes (ranks).
        #[arg(long, short = 'n', value_name = "N")]
        processes: usize,
        /// The nas command line each rank runs, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PluginsAction {
    /// Every component found, with its library and versions.
    List,
    /// One component: versions, library, default config.
    Show {
        /// Component name (or path/to/lib.so:name).
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train {
            config,
            resume,
            stop_after_steps,
        } => commands::train(
            config.config.as_deref(),
            &config.set,
            resume.as_deref(),
            stop_after_steps,
            &cli.plugin_path,
        ),
        Command::Eval {
            run,
            arch,
            subnet_eval: e,
            save_logits,
        } => commands::eval(
            &run,
            &arch,
            e.bn.as_deref(),
            e.calib_batches,
            &e.split,
            save_logits.as_deref(),
            &cli.plugin_path,
        ),
        Command::Complexity {
            config,
            space,
            arch,
            json,
        } => commands::complexity(
            config.config.as_deref(),
            &config.set,
            space.as_deref(),
            &arch,
            json,
            &cli.plugin_path,
        ),
        Command::Plugins { action } => match action {
            PluginsAction::List => commands::plugins_list(&cli.plugin_path),
            PluginsAction::Show { name } => commands::plugins_show(&name, &cli.plugin_path),
        },
        Command::Config { config } => commands::print_config(config.config.as_deref(), &config.set),
        Command::Demo { out_dir, name, set } => {
            commands::demo(&out_dir, &name, &set, &cli.plugin_path)
        }
        Command::Search { options } => {
            nas_host::searching::search_command(&options, &cli.plugin_path)
        }
        Command::Export {
            run,
            arch,
            out,
            bn,
            calib_batches,
        } => nas_host::export::export_command(
            &nas_host::export::ExportOptions {
                run_dir: &run,
                arch: &arch,
                out: out.as_deref(),
                bn: bn.as_deref(),
                calib_batches,
            },
            &cli.plugin_path,
        ),
        Command::Retrain {
            config,
            arch,
            archs_file,
            seeds,
            ground_truth,
        } => commands::retrain(
            config.config.as_deref(),
            &config.set,
            &arch,
            archs_file.as_deref(),
            &seeds,
            &ground_truth,
            &cli.plugin_path,
        ),
        Command::Rank {
            run,
            ground_truth,
            arch,
            archs_file,
            subnet_eval: e,
            top_k,
        } => commands::rank(
            &run,
            &ground_truth,
            &arch,
            archs_file.as_deref(),
            e.bn.as_deref(),
            e.calib_batches,
            &e.split,
            top_k,
            &cli.plugin_path,
        ),
        Command::Bench { options } => commands::bench(&options, &cli.plugin_path),
        Command::Launch { processes, command } => std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|exe| nas_host::launch::launch(&exe, processes, &command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
