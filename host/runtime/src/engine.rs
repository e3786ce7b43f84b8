//! The one wasmtime engine every plugin shares, configured for per-call sandboxes:
//! pooling allocator, epoch interruption, async calls. Never compiles on the request path.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Cache, CacheConfig, Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::capabilities;
use crate::sandbox::CallState;
use crate::warm::IdleBudget;

/// How often the epoch advances: the granularity of deadlines and of guest yields.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Memory a freed sandbox keeps mapped and resets in place for the next call; what a
/// call dirtied past it is unmapped. Bounds the resident memory a used pool slot keeps.
/// Measured: at 2 MiB, a fresh call with a 1 MiB message ran at half the speed (its
/// working set spills past the kept part and faults back in every call).
const KEEP_RESIDENT: usize = 16 << 20;

/// Host stack for host calls made from a guest, on top of the guest's own wasm stack.
const HOST_STACK: usize = 1 << 20;

/// Host-wide settings the engine is built for; the config parser fills them in.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Sandboxes in the pool: calls that can run at once across all plugins.
    pub sandboxes: usize,
    /// Wasm stack per guest.
    pub guest_stack: usize,
    /// The largest linear memory any plugin may use: what each pool slot must hold.
    pub max_memory: usize,
    /// Where compiled plugins are cached across restarts; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

/// Why the engine could not be built or a plugin not compiled.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration or the code.
    #[error(transparent)]
    Wasmtime(#[from] wasmtime::Error),
    /// The OS would not start the epoch thread.
    #[error("starting the epoch thread: {0}")]
    EpochThread(std::io::Error),
}

/// The shared engine, the linker with every host capability, and the epoch ticker;
/// cheap to clone, the ticker stops when the last clone is dropped.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Arc<Linker<CallState>>,
    guest_stack: usize,
    max_memory: usize,
    idle: IdleBudget,
    _ticker: Arc<TickerStop>,
}

/// Stops the epoch thread when dropped.
struct TickerStop(Arc<AtomicBool>);

impl Drop for TickerStop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// An engine whose pool fits the largest memory and stack `host` allows any plugin.
    pub fn new(host: &EngineConfig) -> Result<Self, EngineError> {
        // Resetting a freed sandbox in place (only the pages it dirtied, found with
        // Linux's PAGEMAP_SCAN) costs a fraction of unmapping and faulting them back in.
        // Without PAGEMAP_SCAN, keeping memory resident would mean zeroing all of it.
        let engine = match wasmtime::Engine::new(&config(host, true)?) {
            Ok(engine) => engine,
            Err(error) => {
                tracing::warn!(
                    "resetting sandboxes in place is unavailable ({error:#}); \
                     using wasmtime's default reset (slower per call)"
                );
                wasmtime::Engine::new(&config(host, false)?)?
            }
        };
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker)?;

        let stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.weak(), stop.clone())?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            guest_stack: host.guest_stack,
            max_memory: host.max_memory,
            idle: IdleBudget::new(host.sandboxes),
            _ticker: Arc::new(TickerStop(stop)),
        })
    }

    /// Compiles a component; CPU-heavy, so callers run it off the async workers.
    pub(crate) fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        Component::from_binary(&self.engine, wasm)
    }

    pub(crate) fn linker(&self) -> &Linker<CallState> {
        &self.linker
    }

    pub(crate) fn guest_stack(&self) -> usize {
        self.guest_stack
    }

    /// The largest memory any plugin may be given: what `describe` runs with.
    pub(crate) fn max_memory(&self) -> usize {
        self.max_memory
    }

    /// The host-wide bound on idle warm instances every plugin's pool shares.
    pub(crate) fn idle_budget(&self) -> IdleBudget {
        self.idle.clone()
    }
}

/// The engine's settings: pooled sandboxes sized for the largest limits `host` allows,
/// epoch interruption, async calls, and the compile cache.
fn config(host: &EngineConfig, pagemap_scan: bool) -> Result<Config, EngineError> {
    let sandboxes = u32::try_from(host.sandboxes).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(sandboxes)
        .total_core_instances(4 * sandboxes)
        .total_memories(sandboxes)
        .total_tables(4 * sandboxes)
        .total_stacks(sandboxes)
        .max_memory_size(host.max_memory);
    if pagemap_scan {
        pool.pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
    }

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        // Copying a plugin's data segments in is as cheap as mapping its memory image
        // copy-on-write, and leaves one mapping per sandbox instead of three: with ten
        // thousand sandboxes, the kernel's default map count (65530) is the limit.
        .memory_init_cow(false)
        // Plugins use the synchronous component ABI; the concurrent machinery only adds
        // per-Store setup and teardown.
        .concurrency_support(false)
        .max_wasm_stack(host.guest_stack)
        .async_stack_size(host.guest_stack + HOST_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = &host.cache_dir {
        // wasmtime keys entries by content and compiler settings, and recompiles (and
        // rewrites) any entry it cannot read back.
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        config.cache(Some(Cache::new(cache)?));
    }
    Ok(config)
}

/// Advances the epoch on its own OS thread, so a guest that pins a tokio worker cannot
/// stop the clock that interrupts it.
fn spawn_epoch_ticker(
    engine: wasmtime::EngineWeak,
    stop: Arc<AtomicBool>,
) -> Result<(), EngineError> {
    thread::Builder::new()
        .name("plugrpc-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map_err(EngineError::EpochThread)?;
    Ok(())
}
