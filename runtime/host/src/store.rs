//! The content-addressed module store.
//!
//! A module's id is the SHA-256 of its bytes; names map to ids. Three tiers:
//! - memory: a moka cache of [`LoadedModule`]s, bounded by size; concurrent loads of one module
//!   are coalesced into one compilation;
//! - disk: `<data_dir>/modules/<id>.wasm` keeps the bytes, and
//!   `<data_dir>/compiled/<engine-hash>/<id>.cwasm` the precompiled artifact, keyed also by the
//!   engine's compatibility hash, so a restart never recompiles;
//! - names: `<data_dir>/names`, one `name id` line each.

use crate::compiler::Compiler;
use crate::config::HostConfig;
use crate::imports::State;
use crate::module::{LoadSource, LoadedModule};
use crate::{HostError, InvokeError};
use moka::sync::Cache;
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use steinadler_core::ModuleId;
use wasmtime::{Engine, Linker, Module};

const WASM_MAGIC: &[u8] = b"\0asm";

/// Metrics, through the `metrics` facade (a no-op unless the node installed a recorder; see
/// `steinadler-node`'s `metrics` module, which names the rest): modules compiled or
/// deserialized from the data directory, by `source`, and the time each compile took.
const MODULE_LOADS: &str = "steinadler_module_loads";
const COMPILE_SECONDS: &str = "steinadler_module_compile_duration_seconds";

#[derive(Debug)]
pub(crate) struct ModuleStore {
    cache: Cache<ModuleId, Arc<LoadedModule>>,
    names: RwLock<HashMap<String, ModuleId>>,
    disk: Option<Disk>,
    compiler: Compiler,
    max_wasm_stack: usize,
}

/// The on-disk tier.
#[derive(Debug)]
struct Disk {
    root: PathBuf,
    compiled: PathBuf,
}

impl ModuleStore {
    pub(crate) fn open(engine: &Engine, config: &HostConfig) -> Result<Self, HostError> {
        let cache = Cache::builder()
            .weigher(|_, m: &Arc<LoadedModule>| u32::try_from(m.size()).unwrap_or(u32::MAX))
            .max_capacity(config.module_cache_bytes)
            .build();
        let disk = config
            .data_dir
            .as_deref()
            .map(|dir| Disk::open(dir, engine))
            .transpose()?;
        let names = disk.as_ref().map(Disk::read_names).unwrap_or_default();
        Ok(Self {
            cache,
            names: RwLock::new(names),
            disk,
            compiler: config.compiler.clone(),
            max_wasm_stack: config.max_wasm_stack,
        })
    }

    pub(crate) fn load(
        &self,
        engine: &Engine,
        linker: &Linker<State>,
        bytes: &[u8],
    ) -> Result<Arc<LoadedModule>, InvokeError> {
        if !bytes.starts_with(WASM_MAGIC) {
            return Err(InvokeError::InvalidModule(
                "not a WebAssembly module: it does not start with the `\\0asm` magic bytes. \
                 Pass a .wasm file built with `cargo build --target wasm32-wasip1`"
                    .to_owned(),
            ));
        }
        let id = ModuleId::of(bytes);
        self.cache
            .try_get_with(id, || self.compile(engine, linker, id, bytes))
            .map_err(|e| (*e).clone())
    }

    fn compile(
        &self,
        engine: &Engine,
        linker: &Linker<State>,
        id: ModuleId,
        bytes: &[u8],
    ) -> Result<Arc<LoadedModule>, InvokeError> {
        if let Some(module) = self.disk.as_ref().and_then(|d| d.load_compiled(engine, id)) {
            let loaded = LoadedModule::new(id, bytes, LoadSource::Disk, &module, linker)?;
            metrics::counter!(MODULE_LOADS, "source" => "disk").increment(1);
            return Ok(Arc::new(loaded));
        }
        let started = std::time::Instant::now();
        let compiled =
            crate::compiler::compile(&self.compiler, engine, self.max_wasm_stack, bytes)?;
        let module = &compiled.module;
        let loaded = LoadedModule::new(id, bytes, LoadSource::Compiled, module, linker)?;
        let elapsed = started.elapsed();
        let place = compiled.place;
        tracing::info!(module = %id.short(), bytes = bytes.len(), ?elapsed, place, "compiled module");
        metrics::histogram!(COMPILE_SECONDS, "place" => place).record(elapsed.as_secs_f64());
        metrics::counter!(MODULE_LOADS, "source" => "compiled", "place" => place).increment(1);
        if let Some(disk) = &self.disk {
            disk.save(id, bytes, module, compiled.artifact.as_deref());
        }
        Ok(Arc::new(loaded))
    }

    pub(crate) fn set_name(&self, name: &str, id: ModuleId) {
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if names.insert(name.to_owned(), id) != Some(id)
            && let Some(disk) = &self.disk
        {
            disk.write_names(&names);
        }
    }

    pub(crate) fn resolve(
        &self,
        engine: &Engine,
        linker: &Linker<State>,
        name_or_id: &str,
    ) -> Result<Arc<LoadedModule>, InvokeError> {
        let named = {
            let names = self.names.read().unwrap_or_else(|e| e.into_inner());
            names.get(name_or_id).copied()
        };
        let not_found = || InvokeError::ModuleNotFound(name_or_id.to_owned());
        let id = match named {
            Some(id) => id,
            None => name_or_id.parse::<ModuleId>().map_err(|_| not_found())?,
        };
        self.get(engine, linker, id).map_err(|_| not_found())
    }

    /// The module with this id, from memory or the data directory.
    pub(crate) fn get(
        &self,
        engine: &Engine,
        linker: &Linker<State>,
        id: ModuleId,
    ) -> Result<Arc<LoadedModule>, InvokeError> {
        if let Some(module) = self.cache.get(&id) {
            return Ok(module);
        }
        let bytes = self
            .disk
            .as_ref()
            .and_then(|d| d.read_wasm(id))
            .ok_or_else(|| InvokeError::ModuleNotFound(id.to_string()))?;
        self.load(engine, linker, &bytes)
    }
}

impl Disk {
    fn open(dir: &Path, engine: &Engine) -> Result<Self, HostError> {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compiled = dir
            .join("compiled")
            .join(format!("{:016x}", hasher.finish()));
        for d in [dir.join("modules"), compiled.clone()] {
            std::fs::create_dir_all(&d).map_err(|source| HostError::DataDir {
                path: d.clone(),
                source,
            })?;
        }
        Ok(Self {
            root: dir.to_owned(),
            compiled,
        })
    }

    fn wasm_path(&self, id: ModuleId) -> PathBuf {
        self.root.join("modules").join(format!("{id}.wasm"))
    }

    fn compiled_path(&self, id: ModuleId) -> PathBuf {
        self.compiled.join(format!("{id}.cwasm"))
    }

    fn read_wasm(&self, id: ModuleId) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.wasm_path(id)).ok()?;
        // A file that no longer matches its name is treated as absent.
        (ModuleId::of(&bytes) == id).then_some(bytes)
    }

    fn load_compiled(&self, engine: &Engine, id: ModuleId) -> Option<Module> {
        let path = self.compiled_path(id);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the artifact was written by `Module::serialize` of this engine configuration
        // (the directory is keyed by its compatibility hash) into the node's own data directory.
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable precompiled module: {e:#}");
                None
            }
        }
    }

    /// Keeps the bytes and the artifact; `artifact` is the child compiler's, when it made one.
    fn save(&self, id: ModuleId, bytes: &[u8], module: &Module, artifact: Option<&[u8]>) {
        let result = match artifact {
            Some(a) => Ok(Cow::Borrowed(a)),
            None => module
                .serialize()
                .map(Cow::Owned)
                .map_err(std::io::Error::other),
        }
        .and_then(|artifact| {
            write_atomic(&self.wasm_path(id), bytes)?;
            write_atomic(&self.compiled_path(id), &artifact)
        });
        if let Err(e) = result {
            tracing::warn!(module = %id.short(), "cannot save the precompiled module; it will be recompiled after a restart: {e}");
        }
    }

    fn read_names(&self) -> HashMap<String, ModuleId> {
        let text = std::fs::read_to_string(self.root.join("names")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (name, id) = line.rsplit_once(' ')?;
                Some((name.to_owned(), id.parse().ok()?))
            })
            .collect()
    }

    fn write_names(&self, names: &HashMap<String, ModuleId>) {
        let mut lines: Vec<String> = names.iter().map(|(n, id)| format!("{n} {id}\n")).collect();
        lines.sort();
        if let Err(e) = write_atomic(&self.root.join("names"), lines.concat().as_bytes()) {
            tracing::warn!("cannot save module names: {e}");
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
