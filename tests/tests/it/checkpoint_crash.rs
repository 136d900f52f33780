//! Checkpoints survive `kill -9`: a child process (this test binary, run again with an
//! environment variable) trains and saves a checkpoint after every step, and is killed with
//! SIGKILL at random moments; after every kill the newest checkpoint must be byte-identical
//! to what an uninterrupted run saves at that step, load, and continue bit-exactly.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng as _;
use rnnlab_core::seeded_rng;
use rnnlab_optim::{AdamConfig, ClipConfig};
use rnnlab_tasks::AddingConfig;
use rnnlab_train::{
    CellConfig, MODEL_FILE, ModelConfig, Recorder, STATE_FILE, TrainConfig, Trainer, latest_checkpoint,
};

/// Set in the child: the directory it saves into.
const CHILD_ENV: &str = "RNNLAB_CRASH_TEST_CHILD_DIR";
/// What the child prints once it has resumed.
const READY: &str = "rnnlab-crash-child-ready";
/// Kills (each a fresh child).
const KILLS: usize = 250;
/// The longest wait before a kill, after the child said it is ready.
const MAX_WAIT_US: u64 = 60_000;

fn config() -> TrainConfig {
    let task = AddingConfig::new(6);
    let model = ModelConfig::for_task(&task.build().expect("task"), 5, CellConfig::lstm()).with_n_layers(2);
    TrainConfig::new(task.into(), model, AdamConfig::new(1e-2).into())
        .with_clip(ClipConfig::global_norm(1.0))
        .with_batch_size(4)
        .with_eval_batch(4)
        .with_n_steps(1_000_000)
        .with_seed(11)
}

/// One step, then a checkpoint: the child's loop and the reference's.
fn step(t: &mut Trainer<f32>) {
    t.run(&mut Recorder { stop_after: Some(1), ..Recorder::default() }).expect("step");
}

/// The child: resume the newest checkpoint, say so, then step and save until killed.
fn child(dir: &Path) -> ! {
    let mut t = Trainer::<f32>::resume(dir).expect("the child resumes");
    // The harness may have printed on the same line: the parent looks for this word anywhere.
    println!("{READY} {}", t.step());
    loop {
        step(&mut t);
        t.save_checkpoint(dir).expect("save");
    }
}

/// The files of the newest checkpoint in `dir`.
fn newest_files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let c = latest_checkpoint(dir).expect("listing").expect("a checkpoint survives every kill");
    (std::fs::read(c.join(MODEL_FILE)).expect("model"), std::fs::read(c.join(STATE_FILE)).expect("state"))
}

/// The uninterrupted run, saving every step, with the files of the steps still wanted.
struct Reference {
    trainer: Trainer<f32>,
    dir: PathBuf,
    files: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
}

impl Reference {
    /// The files of step `k`, running on to it if needed.
    fn at(&mut self, k: u64) -> (Vec<u8>, Vec<u8>) {
        while self.trainer.step() < k {
            step(&mut self.trainer);
            self.trainer.save_checkpoint(&self.dir).expect("reference save");
            self.files.insert(self.trainer.step(), newest_files(&self.dir));
        }
        self.files.get(&k).cloned().expect("steps at or after the last one checked are kept")
    }
}

#[test]
fn checkpoints_survive_kill_9_at_random_moments() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let start = Instant::now();
    let root = std::env::temp_dir().join(format!("rnnlab-crash-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (dir, ref_dir) = (root.join("run"), root.join("reference"));
    let mut reference =
        Reference { trainer: Trainer::<f32>::new(config()).expect("config"), dir: ref_dir, files: BTreeMap::new() };
    reference.trainer.save_checkpoint(&dir).expect("first save");
    reference.trainer.save_checkpoint(&reference.dir).expect("first reference save");
    reference.files.insert(0, newest_files(&reference.dir));

    // This test's name as the harness knows it (without the binary's crate name).
    let module = module_path!().split_once("::").map_or(module_path!(), |(_, m)| m);
    let name = format!("{module}::checkpoints_survive_kill_9_at_random_moments");
    let exe = std::env::current_exe().expect("the test binary");
    let mut rng = seeded_rng(2024);
    let (mut last_step, mut advanced, mut mid_save, mut before_prune, mut mid_prune) = (0u64, 0, 0, 0, 0);
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .expect("run dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    for kill in 0..KILLS {
        let before = names(&dir);
        let mut c = Command::new(&exe)
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let mut out = BufReader::new(c.stdout.take().expect("piped"));
        let mut line = String::new();
        while !line.contains(READY) {
            line.clear();
            if out.read_line(&mut line).expect("child stdout") == 0 {
                let mut err = String::new();
                let _ = c.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("kill {kill}: the child ended before it was ready: {err}");
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..MAX_WAIT_US)));
        let alive = c.try_wait().expect("child status").is_none();
        let mut err = String::new();
        c.kill().expect("SIGKILL");
        c.wait().expect("reap");
        let _ = c.stderr.take().map(|mut e| e.read_to_string(&mut err));
        assert!(alive, "kill {kill}: the child ended on its own: {err}");

        // Where the kill fell, from what this child left: a staged checkpoint (inside a save,
        // before its commit), a new checkpoint beside an older one (after a commit, before the
        // removal), an older one being removed.
        let after = names(&dir);
        let new = |prefix: &str| after.iter().any(|n| n.starts_with(prefix) && !before.contains(n));
        mid_save += usize::from(new(".staging-"));
        before_prune +=
            usize::from(new("checkpoint-") && after.iter().filter(|n| n.starts_with("checkpoint-")).count() > 1);
        mid_prune += usize::from(new(".trash-"));

        // The newest checkpoint is exactly what the uninterrupted run saved at its step...
        let mut resumed = Trainer::<f32>::resume(&dir).unwrap_or_else(|e| panic!("kill {kill}: resume: {e}"));
        let k = resumed.step();
        assert!(k >= last_step, "kill {kill}: step {k} after {last_step}: a checkpoint went back");
        advanced += usize::from(k > last_step);
        last_step = k;
        assert!(newest_files(&dir) == reference.at(k), "kill {kill}: the checkpoint of step {k} differs");
        // ...and continues bit-exactly (the optimizer, the generator and the run state loaded).
        step(&mut resumed);
        let next = reference.at(k + 1);
        assert!(resumed.model().to_safetensors().expect("weights") == next.0, "kill {kill}: step {} differs", k + 1);
        reference.files.retain(|&s, _| s >= k);
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "crash test: {KILLS} kills in {secs:.1} s, reached step {last_step}; kills that fell inside a save before \
         its commit: {mid_save}, after a commit before the older checkpoint was removed: {before_prune}, while it was \
         removed: {mid_prune}; kills after which the newest checkpoint was newer: {advanced}"
    );
    assert!(mid_save > 0, "no kill fell inside a save: the test did not test the window it is for");
    let _ = std::fs::remove_dir_all(&root);
}
