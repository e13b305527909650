//! The [`Host`]: one engine, its deadline clock, the host imports and the module store.

use crate::clock::Ticker;
use crate::config::{HostConfig, InvokeLimits};
use crate::imports::{self, State};
use crate::module::LoadedModule;
use crate::store::ModuleStore;
use crate::{HostError, InvokeError};
use std::path::Path;
use std::sync::Arc;
use steinadler_core::{ModuleId, Term};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig};

/// A sandboxed wasm host for one node.
///
/// `Host` is `Send + Sync`; share it behind an `Arc`. [`Host::invoke`] runs the guest on the
/// calling thread and blocks until it returns, so async callers should use `spawn_blocking`.
#[derive(Debug)]
pub struct Host {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<State>,
    pub(crate) store: ModuleStore,
    pub(crate) config: HostConfig,
    pub(crate) node_name: Arc<str>,
    /// Stops the deadline clock when the host is dropped.
    _ticker: Ticker,
}

impl Host {
    /// Builds the engine, starts its deadline clock and opens the module store.
    ///
    /// # Errors
    ///
    /// [`HostError::Engine`] if wasmtime rejects the configuration, [`HostError::DataDir`] if the
    /// data directory cannot be created.
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        let engine = Engine::new(&engine_config(&config)).map_err(HostError::Engine)?;
        let mut linker = Linker::new(&engine);
        imports::add_to_linker(&mut linker).map_err(HostError::Engine)?;
        let store = ModuleStore::open(&engine, &config)?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)?;
        Ok(Self {
            node_name: Arc::from(config.node_name.as_str()),
            engine,
            linker,
            store,
            config,
            _ticker: ticker,
        })
    }

    /// The limits a call gets when it does not pass its own.
    pub fn default_limits(&self) -> InvokeLimits {
        self.config.default_limits.clone()
    }

    /// This host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Loads a module from its bytes: hashes, validates the ABI, compiles (or finds it compiled)
    /// and caches it.
    ///
    /// # Errors
    ///
    /// [`InvokeError::InvalidModule`] if the bytes are not wasm, if the module lacks the
    /// Steinadler ABI, or if it imports something the host does not provide. The message says
    /// what is missing.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedModule>, InvokeError> {
        self.store.load(&self.engine, &self.linker, bytes)
    }

    /// Reads and loads a `.wasm` file, and names the module after the file's stem.
    ///
    /// # Errors
    ///
    /// [`InvokeError::ModuleNotFound`] if the file cannot be read, otherwise as [`Host::load`].
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Arc<LoadedModule>, InvokeError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| InvokeError::ModuleNotFound(format!("{}: {e}", path.display())))?;
        let module = self.load(&bytes)?;
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            self.store.set_name(stem, module.id());
        }
        Ok(module)
    }

    /// Gives a loaded module a name; later lookups by that name find it.
    pub fn set_name(&self, name: &str, id: ModuleId) {
        self.store.set_name(name, id);
    }

    /// Finds a module by name or by its 64-hex-digit id.
    ///
    /// # Errors
    ///
    /// [`InvokeError::ModuleNotFound`] if neither the name nor the id is known.
    pub fn resolve(&self, name_or_id: &str) -> Result<Arc<LoadedModule>, InvokeError> {
        self.store.resolve(&self.engine, &self.linker, name_or_id)
    }

    /// Finds a module by its id.
    ///
    /// # Errors
    ///
    /// [`InvokeError::ModuleNotFound`] if this host does not hold it.
    pub fn get(&self, id: ModuleId) -> Result<Arc<LoadedModule>, InvokeError> {
        self.store.get(&self.engine, &self.linker, id)
    }

    /// Runs `function` with `args`, a MessagePack array, and returns the encoded result.
    ///
    /// Each call gets a fresh instance, so no state leaks between calls. The guest runs inside
    /// the returned future and yields to the executor at every tick of the deadline clock, so
    /// an async caller may await it on its own workers. Dropping the future stops the guest.
    ///
    /// # Errors
    ///
    /// Every failure is an [`InvokeError`]; the host keeps serving after all of them.
    pub async fn invoke_async(
        &self,
        module: &LoadedModule,
        function: &str,
        args: &[u8],
        limits: &InvokeLimits,
    ) -> Result<Vec<u8>, InvokeError> {
        crate::invoke::invoke(self, module, function, args, limits).await
    }

    /// [`Host::invoke_async`] for synchronous callers: blocks the calling thread until the call
    /// ends. Do not call it from inside an async runtime.
    ///
    /// # Errors
    ///
    /// As [`Host::invoke_async`].
    pub fn invoke(
        &self,
        module: &LoadedModule,
        function: &str,
        args: &[u8],
        limits: &InvokeLimits,
    ) -> Result<Vec<u8>, InvokeError> {
        futures::executor::block_on(self.invoke_async(module, function, args, limits))
    }

    /// Like [`Host::invoke`], with the arguments and result as [`Term`]s.
    ///
    /// # Errors
    ///
    /// As [`Host::invoke`]; a result that is not valid MessagePack is [`InvokeError::BadOutput`].
    pub fn invoke_term(
        &self,
        module: &LoadedModule,
        function: &str,
        args: &[Term],
        limits: &InvokeLimits,
    ) -> Result<Term, InvokeError> {
        let args = Term::List(args.to_vec()).encode();
        let out = self.invoke(module, function, &args, limits)?;
        Term::decode(&out).map_err(|e| {
            InvokeError::BadOutput(format!("the guest returned invalid MessagePack: {e}"))
        })
    }
}

fn engine_config(config: &HostConfig) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.max_instances)
        .total_memories(config.max_instances)
        .total_tables(config.max_instances)
        .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
        // Reset a freed slot's first bytes with memset rather than madvise, so the next
        // instance does not page-fault its stack and heap back in; with PAGEMAP_SCAN only the
        // dirtied pages are reset. See "Design" in the README for the measurements.
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);

    pool.total_stacks(config.max_instances);
    let mut cfg = crate::compiler::codegen_config(config.max_wasm_stack);
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    cfg
}
