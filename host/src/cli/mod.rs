//! The command line: every clap struct of `nas`, and nothing else. `commands` reads these;
//! nothing below `commands` sees them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `nas`: the whole command line.
#[derive(Parser)]
#[command(
    name = "nas",
    version,
    about = "One-shot neural architecture search on libtorch, with plugin search spaces and training policies"
)]
pub struct Cli {
    /// Extra folder to search for plugin libraries (repeatable; searched before NAS_PLUGIN_PATH
    /// and the folder beside the nas binary).
    #[arg(long = "plugin-path", global = true, value_name = "DIR")]
    pub plugin_path: Vec<PathBuf>,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// A config file and overrides, as `nas train` and friends take them.
#[derive(Args, Clone, Debug)]
pub struct ConfigArgs {
    /// TOML config file (defaults apply to everything it leaves out).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. --set train.epochs=2 --set space.config.channels=8.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// How subnets of a trained supernet are evaluated (`nas eval`, `nas rank`).
#[derive(Args, Clone, Debug)]
pub struct SubnetEvalArgs {
    /// BN policy: batch-stats, recalibrate or running (default: the run's eval.bn).
    #[arg(long)]
    pub bn: Option<String>,
    /// Training batches for `recalibrate` (default: the run's eval.calib_batches).
    #[arg(long)]
    pub calib_batches: Option<usize>,
    /// Split: test or holdout.
    #[arg(long, default_value = "test")]
    pub split: String,
}

/// The subcommands.
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Train a supernet.
    Train(TrainArgs),
    /// Evaluate subnets of a trained supernet on the test (or held-out) split.
    Eval(EvalArgs),
    /// Exact MACs ("FLOPs") and parameters of a subnet.
    Complexity(ComplexityArgs),
    /// List or describe plugins on the search path.
    Plugins {
        /// What to show.
        #[command(subcommand)]
        action: PluginsAction,
    },
    /// Print the resolved config (defaults + file + overrides) as TOML.
    Config {
        /// The config.
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// The main job on the built-in default: train an NB201 supernet on Fashion-MNIST with uniform
    /// sampling, then evaluate a few subnets.
    Demo(DemoArgs),
    /// Search a trained supernet (evolutionary or random) under complexity budgets, on its
    /// held-out split.
    Search(SearchArgs),
    /// Export a subnet of a trained supernet: weights (safetensors), a TorchScript module checked
    /// against the supernet, and a manifest.
    Export(ExportArgs),
    /// Train subnets from scratch (stand-alone) and record their test accuracy as ground truth.
    Retrain(RetrainArgs),
    /// Correlate a supernet's ranking of subnets with ground truth (Kendall tau-b, Spearman rho).
    Rank(RankArgs),
    /// Measure training speed (steps/s and host overhead) on synthetic data.
    Bench(BenchArgs),
    /// Measure the input pipeline alone on an image folder: images/s through decoding,
    /// augmentation and batching, and the process's peak memory.
    BenchData(BenchDataArgs),
    /// Measure a space's latency on this machine's CPU or GPU: time plain subnets end to end,
    /// fit an additive per-choice table, validate it on held-out subnets, write latency.json.
    Profile(ProfileArgs),
    /// Run a command as N processes of one data-parallel run on this machine (what torchrun
    /// --nproc-per-node N --no-python does), e.g. `nas launch -n 2 -- train --config run.toml`.
    Launch(LaunchArgs),
}

/// `nas bench-data`.
#[derive(Args, Clone, Debug)]
pub struct BenchDataArgs {
    /// Image folder (train/<class>/* and test/<class>/*).
    #[arg(long, value_name = "DIR")]
    pub folder: PathBuf,
    /// Augmentation preset (none, cifar, imagenet, vit, autoformer).
    #[arg(long, default_value = "imagenet")]
    pub preset: String,
    /// Output resolution.
    #[arg(long, default_value_t = 224)]
    pub resolution: u32,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Batches queued ahead.
    #[arg(long, default_value_t = 4)]
    pub prefetch: usize,
    /// Timed batches (after 3 warm-up batches).
    #[arg(long, default_value_t = 50)]
    pub batches: u64,
    /// Colour jitter strength (overrides the preset's; 0 = off).
    #[arg(long)]
    pub color_jitter: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `nas train`.
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// The config.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Continue the run in this folder from its latest checkpoint (uses its config.toml).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Stop after this many steps of this invocation, writing a checkpoint (resume later with
    /// --resume).
    #[arg(long, value_name = "N")]
    pub stop_after_steps: Option<u64>,
}

/// `nas eval`.
#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// Run folder written by `nas train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Arch in the space's text form or as a JSON list of choices (repeatable).
    #[arg(long, required = true)]
    pub arch: Vec<String>,
    /// How subnets are evaluated.
    #[command(flatten)]
    pub subnet_eval: SubnetEvalArgs,
    /// Also write the split's images, labels and this arch's logits (one --arch only) to a
    /// safetensors file, e.g. to compare an exported module with the supernet.
    #[arg(long, value_name = "FILE")]
    pub save_logits: Option<PathBuf>,
}

/// `nas complexity`.
#[derive(Args, Clone, Debug)]
pub struct ComplexityArgs {
    /// The config.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Space name (default: the config's space.name).
    #[arg(long)]
    pub space: Option<String>,
    /// Arch in the space's text form or as a JSON list of choices (repeatable).
    #[arg(long, required = true)]
    pub arch: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `nas plugins`.
#[derive(Subcommand, Clone, Debug)]
pub enum PluginsAction {
    /// Every component found, with its library and versions.
    List,
    /// One component: versions, library, default config.
    Show {
        /// Component name (or path/to/lib.so:name).
        name: String,
    },
}

/// `nas demo`.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// Parent folder of the run folder.
    #[arg(long, default_value = "runs")]
    pub out_dir: PathBuf,
    /// Run name.
    #[arg(long, default_value = "demo")]
    pub name: String,
    /// Override a config value of the demo run.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// `nas search`.
#[derive(Args, Clone, Debug)]
pub struct SearchArgs {
    /// Run folder written by `nas train` (its config must carve a held-out split: data.holdout).
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// `evolution` (SPOS) or `random`.
    #[arg(long, default_value = "evolution")]
    pub algorithm: String,
    /// Minimum MACs of a candidate.
    #[arg(long)]
    pub min_macs: Option<f64>,
    /// Maximum MACs of a candidate.
    #[arg(long)]
    pub max_macs: Option<f64>,
    /// Minimum parameters of a candidate.
    #[arg(long)]
    pub min_params: Option<f64>,
    /// Maximum parameters of a candidate.
    #[arg(long)]
    pub max_params: Option<f64>,
    /// Several maximum budgets (comma-separated, in `--metric` units; ms for latency): one
    /// search each, sharing evaluations, and the Pareto front over all candidates.
    #[arg(long, value_delimiter = ',')]
    pub budgets: Vec<f64>,
    /// Metric of `--budgets` and of the Pareto plot: macs, params or latency (needs
    /// --latency-table).
    #[arg(long, default_value = "macs")]
    pub metric: String,
    /// Latency table written by `nas profile` for this run's space and config: prices every
    /// candidate (a candidate over a latency bound is never evaluated).
    #[arg(long, value_name = "FILE")]
    pub latency_table: Option<PathBuf>,
    /// Maximum latency of a candidate by the latency table, in ms.
    #[arg(long, value_name = "MS", requires = "latency_table")]
    pub max_latency_ms: Option<f64>,
    /// Minimum latency of a candidate by the latency table, in ms.
    #[arg(long, value_name = "MS", requires = "latency_table")]
    pub min_latency_ms: Option<f64>,
    /// The device the search is for (cpu, cuda, cuda:N): refused if the latency table was
    /// measured on another kind of device (default: the table's).
    #[arg(long, value_name = "DEVICE", requires = "latency_table")]
    pub latency_device: Option<String>,
    /// Evolution: population size.
    #[arg(long, default_value_t = 50)]
    pub population: usize,
    /// Evolution: iterations after the initial population.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// Evolution: parents kept.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Evolution: children by mutation per iteration.
    #[arg(long, default_value_t = 25)]
    pub mutations: usize,
    /// Evolution: per-gene mutation probability.
    #[arg(long, default_value_t = 0.1)]
    pub mutation_prob: f64,
    /// Evolution: children by crossover per iteration.
    #[arg(long, default_value_t = 25)]
    pub crossovers: usize,
    /// Random search: candidates evaluated.
    #[arg(long, default_value_t = 1000)]
    pub evaluations: usize,
    /// BN policy per candidate: recalibrate (default) or batch-stats.
    #[arg(long, default_value = "recalibrate")]
    pub bn: String,
    /// Training batches for BN recalibration per candidate.
    #[arg(long, default_value_t = 20)]
    pub calib_batches: usize,
    /// Evaluate on the first N held-out images only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub holdout_examples: usize,
    /// Seed of the search.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Name of the output folder under <run>/search/.
    #[arg(long, default_value = "search")]
    pub name: String,
    /// No search: the run's trained generator gives the arch of each target directly
    /// (`argmax AG(C)`, ShiftNAS), with its exact complexity and accuracy.
    #[arg(long)]
    pub generator: bool,
    /// Targets for `--generator`, in the generator's metric (comma-separated; K, M and G
    /// suffixes, e.g. 150M).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// `--generator`: also this many targets at the centres of equal bins over the space's
    /// complexity range.
    #[arg(long, default_value_t = 0)]
    pub targets_across: usize,
}

/// `nas export`.
#[derive(Args, Clone, Debug)]
pub struct ExportArgs {
    /// Run folder written by `nas train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Arch in the space's text form, as a JSON list of choices, or @best.json from a search
    /// (its first entry).
    #[arg(long)]
    pub arch: String,
    /// Output folder (default: <run>/export/<choices>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// BN statistics to freeze: `recalibrate` (for this arch) or `running` (as trained).
    /// Default: the run's [eval] policy, with batch-stats exported as recalibrate.
    #[arg(long, value_name = "POLICY")]
    pub bn: Option<String>,
    /// Calibration batches for `recalibrate` (default: the run's [eval] calib_batches).
    #[arg(long, value_name = "K")]
    pub calib_batches: Option<usize>,
    /// Latency table written by `nas profile` for this run's space on this machine: arch.json
    /// records the table's latency of the subnet and the exported module's measured latency
    /// (timed as the table was: same device, threads, batch and protocol).
    #[arg(long, value_name = "FILE")]
    pub latency_table: Option<PathBuf>,
}

/// `nas retrain`.
#[derive(Args, Clone, Debug)]
pub struct RetrainArgs {
    /// The config.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Arch in the space's text form or as a JSON list of choices (repeatable).
    #[arg(long)]
    pub arch: Vec<String>,
    /// File with one arch per line (blank lines and `#` comments ignored).
    #[arg(long, value_name = "FILE")]
    pub archs_file: Option<PathBuf>,
    /// Seeds, comma-separated: one training run per arch and seed.
    #[arg(long, default_value = "0", value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Ground-truth file (JSON lines) the accuracies are added to.
    #[arg(long, value_name = "FILE")]
    pub ground_truth: PathBuf,
}

/// `nas rank`.
#[derive(Args, Clone, Debug)]
pub struct RankArgs {
    /// Run folder written by `nas train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// A `nas retrain` file, or nb201:PATH/TO/table.csv[:cifar10|cifar100|imagenet16].
    #[arg(long, value_name = "SPEC")]
    pub ground_truth: String,
    /// Arch to rank (repeatable; default with a retrain file: all of its archs).
    #[arg(long)]
    pub arch: Vec<String>,
    /// File with one arch per line.
    #[arg(long, value_name = "FILE")]
    pub archs_file: Option<PathBuf>,
    /// How subnets are evaluated.
    #[command(flatten)]
    pub subnet_eval: SubnetEvalArgs,
    /// k of the top-k overlap.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
}

/// `nas bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Space: `nb201`, `cnn`, `vit` (or any space plugin).
    #[arg(long, default_value = "nb201")]
    pub space: String,
    /// The space's config as JSON (cnn/vit: e.g. '{"preset": "autoformer-tiny"}'); NB201 takes
    /// --channels and --cells instead.
    #[arg(long, value_name = "JSON")]
    pub space_config: Option<String>,
    /// NB201 channels C.
    #[arg(long, default_value_t = 16)]
    pub channels: i64,
    /// NB201 cells per stage N.
    #[arg(long, default_value_t = 5)]
    pub cells: i64,
    /// Train this one arch every step (the `fixed` sampler) instead of uniform sampling.
    #[arg(long)]
    pub arch: Option<String>,
    /// Also train the same arch as a plain model (the space rebuilt at exactly the subnet's sizes,
    /// as `nas export` does), alternating blocks of steps with the supernet in one run, and report
    /// the supernet's slicing overhead. Needs --arch.
    #[arg(long, requires = "arch")]
    pub compare_plain: bool,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Input resolution (3-channel synthetic images).
    #[arg(long, default_value_t = 32)]
    pub resolution: i64,
    /// Classes of the synthetic data.
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    /// Timed steps.
    #[arg(long, default_value_t = 50)]
    pub steps: u64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// libtorch threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seed of the sampled paths.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `nas profile`.
#[derive(Args, Clone, Debug)]
pub struct ProfileArgs {
    /// Space to profile (`nb201`, `cnn`, `vit` or any space plugin).
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    pub space: Option<String>,
    /// The space's config: a JSON object, or a .json or .toml file holding one. It must be the
    /// config the table will be used with (search and export compare its digest).
    #[arg(long, value_name = "JSON|FILE", requires = "space")]
    pub space_config: Option<String>,
    /// Profile the space (and exact config) a run was trained with, from its run.json.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: Option<PathBuf>,
    /// Device the subnets run on: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Batch size of the timed runs.
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Subnets the table is fitted to (0: four times the number of table terms, at least 40).
    #[arg(long, default_value_t = 0)]
    pub fit_archs: usize,
    /// Held-out subnets the table is validated on.
    #[arg(long, default_value_t = 20)]
    pub validate: usize,
    /// Untimed runs before each subnet's timed runs.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed runs per subnet and round (the table uses the median over all rounds).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Rounds over all subnets, each in a new shuffled order (spreads a busy spell of the
    /// machine over many subnets).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Seed of the drawn subnets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the table.
    #[arg(long, default_value = "latency.json", value_name = "FILE")]
    pub out: PathBuf,
}

/// `nas launch`.
#[derive(Args, Clone, Debug)]
pub struct LaunchArgs {
    /// Number of processes (ranks).
    #[arg(long, short = 'n', value_name = "N")]
    pub processes: usize,
    /// The nas command line each rank runs, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}
