//! A loaded module: compiled, checked against the ABI, and pre-linked for fast instantiation.

use crate::InvokeError;
use crate::imports::State;
use std::collections::BTreeMap;
use steinadler_core::ModuleId;
use wasmtime::{ExternType, FuncType, InstancePre, Linker, Module, ModuleExport, ValType};

/// Where the host found a module's compiled code when it first loaded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// A precompiled artifact from the data directory: nothing was compiled.
    Disk,
    /// Compiled from the wasm bytes.
    Compiled,
}

/// A module ready to invoke: validated, compiled, and linked against the host imports.
pub struct LoadedModule {
    id: ModuleId,
    bytes: std::sync::Arc<[u8]>,
    source: LoadSource,
    pub(crate) pre: InstancePre<State>,
    pub(crate) memory: ModuleExport,
    pub(crate) alloc: ModuleExport,
    pub(crate) functions: BTreeMap<String, ModuleExport>,
}

impl LoadedModule {
    /// Checks `module` against the ABI and pre-links it.
    pub(crate) fn new(
        id: ModuleId,
        bytes: &[u8],
        source: LoadSource,
        module: &Module,
        linker: &Linker<State>,
    ) -> Result<Self, InvokeError> {
        let abi = Abi::check(module)?;
        let pre = linker.instantiate_pre(module).map_err(|e| {
            InvokeError::InvalidModule(format!(
                "{e:#}; a Steinadler guest may import only WASI preview 1 and the `steinadler` \
                 host functions"
            ))
        })?;
        Ok(Self {
            id,
            bytes: bytes.into(),
            source,
            pre,
            memory: abi.memory,
            alloc: abi.alloc,
            functions: abi.functions,
        })
    }

    /// The module's id, the SHA-256 of its bytes.
    pub fn id(&self) -> ModuleId {
        self.id
    }

    /// The size of the module's wasm bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The module's wasm bytes, for handing it to another node.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where the host found this module's compiled code when it first loaded it.
    pub fn source(&self) -> LoadSource {
        self.source
    }

    /// The exported functions callable through the ABI, sorted by name.
    pub fn functions(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("id", &self.id)
            .field("size", &self.bytes.len())
            .field("source", &self.source)
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The ABI exports found in a module.
struct Abi {
    memory: ModuleExport,
    alloc: ModuleExport,
    functions: BTreeMap<String, ModuleExport>,
}

impl Abi {
    fn check(module: &Module) -> Result<Self, InvokeError> {
        let engine = module.engine();
        let alloc_ty = FuncType::new(engine, [ValType::I32], [ValType::I32]);
        let dealloc_ty = FuncType::new(engine, [ValType::I32, ValType::I32], []);
        let entry_ty = FuncType::new(engine, [ValType::I32, ValType::I32], [ValType::I64]);

        let mut missing = Vec::new();
        let mut memory = None;
        let mut alloc = None;
        let mut has_dealloc = false;
        let mut functions = BTreeMap::new();
        for export in module.exports() {
            let name = export.name();
            match (name, export.ty()) {
                ("memory", ExternType::Memory(_)) => memory = module.get_export_index(name),
                ("alloc", ExternType::Func(f)) if FuncType::eq(&f, &alloc_ty) => {
                    alloc = module.get_export_index(name);
                }
                ("dealloc", ExternType::Func(f)) if FuncType::eq(&f, &dealloc_ty) => {
                    has_dealloc = true;
                }
                (_, ExternType::Func(f)) if FuncType::eq(&f, &entry_ty) => {
                    if let Some(index) = module.get_export_index(name) {
                        functions.insert(name.to_owned(), index);
                    }
                }
                _ => {}
            }
        }
        if memory.is_none() {
            missing.push("a memory export named `memory`");
        }
        if alloc.is_none() {
            missing.push("`alloc: (i32) -> i32`");
        }
        if !has_dealloc {
            missing.push("`dealloc: (i32, i32) -> ()`");
        }
        if functions.is_empty() {
            missing.push("any function with the signature `(i32, i32) -> i64`");
        }
        match (memory, alloc) {
            (Some(memory), Some(alloc)) if missing.is_empty() => Ok(Self {
                memory,
                alloc,
                functions,
            }),
            _ => Err(InvokeError::InvalidModule(format!(
                "the module lacks the Steinadler ABI: missing {}. Build it with the steinadler \
                 guest SDK and mark functions with #[steinadler::function] (see docs/abi.md)",
                missing.join(", ")
            ))),
        }
    }
}
