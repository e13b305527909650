//! An instance that lives on between calls: the part processes and stream producers share.
//!
//! It owns the store, the guest's memory and its `alloc`/`dealloc` exports, and runs one
//! exported `(ptr, len) -> packed` function at a time with the input written into guest memory,
//! renewing the deadline and the output budget for each call.

use crate::InvokeError;
use crate::config::InvokeLimits;
use crate::engine::Host;
use crate::imports::State;
use crate::invoke::{classify, new_store, read_envelope_with};
use crate::module::LoadedModule;
use crate::output::OutputBudget;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Extern, Memory, Store, Trap, TypedFunc};

/// An exported entry point with the `(ptr, len) -> packed envelope` shape.
pub(crate) type Entry = TypedFunc<(u32, u32), u64>;

pub(crate) struct Resident {
    pub(crate) store: Store<State>,
    instance: wasmtime::Instance,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    dealloc: Option<TypedFunc<(u32, u32), ()>>,
    limits: InvokeLimits,
    budget: Arc<OutputBudget>,
}

impl Resident {
    /// Instantiates `module`; `label` names the instance in guest output.
    pub(crate) async fn new(
        host: &Host,
        module: &LoadedModule,
        limits: &InvokeLimits,
        label: String,
        process: Option<crate::messenger::ProcessCtx>,
    ) -> Result<Self, InvokeError> {
        let budget = Arc::new(OutputBudget::new(
            Arc::from(module.id().short()),
            Arc::from(label),
            limits.max_log_bytes,
        ));
        let _awake = crate::clock::Awake::new();
        let mut store = new_store(host, limits, &budget);
        store.data_mut().process = process;
        let instance = match module.pre.instantiate_async(&mut store).await {
            Ok(i) => i,
            Err(e) if e.downcast_ref::<Trap>().is_none() && !store.data().limiter.hit => {
                return Err(InvokeError::Overloaded(format!(
                    "cannot start an instance: {e:#}. The node runs at most {} instances at \
                     once, processes and streams included; stop some or retry later",
                    host.config.max_instances
                )));
            }
            Err(e) => return Err(classify(e, store.data_mut(), limits)),
        };
        let memory = match instance.get_module_export(&mut store, &module.memory) {
            Some(Extern::Memory(m)) => m,
            _ => {
                return Err(InvokeError::InvalidModule(
                    "the module's `memory` export is not a memory".into(),
                ));
            }
        };
        let alloc = instance
            .get_func(&mut store, "alloc")
            .ok_or_else(|| InvokeError::InvalidModule("the module has no `alloc` export".into()))?
            .typed::<u32, u32>(&store)
            .map_err(|e| InvokeError::InvalidModule(format!("`alloc`: {e:#}")))?;
        let dealloc = instance
            .get_func(&mut store, "dealloc")
            .and_then(|f| f.typed::<(u32, u32), ()>(&store).ok());
        Ok(Self {
            store,
            instance,
            memory,
            alloc,
            dealloc,
            limits: limits.clone(),
            budget,
        })
    }

    /// The export `name`, with the entry-point shape.
    pub(crate) fn entry(&mut self, name: &str) -> Result<Entry, InvokeError> {
        self.instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| {
                InvokeError::InvalidModule(format!("the module has no `{name}` export"))
            })?
            .typed::<(u32, u32), u64>(&self.store)
            .map_err(|e| InvokeError::InvalidModule(format!("`{name}`: {e:#}")))
    }

    /// Bytes of linear memory the instance holds.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Calls `func` with `input`, returning the value of its envelope.
    pub(crate) async fn call(
        &mut self,
        func: &Entry,
        input: &[u8],
    ) -> Result<Vec<u8>, InvokeError> {
        self.call_with(func, input, <[u8]>::to_vec).await
    }

    /// Calls `func` with `input` and hands the value of its envelope, still in guest memory, to
    /// `take`: the caller copies it out where it needs it, once.
    pub(crate) async fn call_with<R>(
        &mut self,
        func: &Entry,
        input: &[u8],
        take: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, InvokeError> {
        let len = u32::try_from(input.len())
            .map_err(|_| InvokeError::BadArguments("an input larger than 4 GiB".to_owned()))?;
        let _awake = crate::clock::Awake::new();
        self.budget.refill();
        self.store.data_mut().deadline = Instant::now() + self.limits.deadline;
        let store = &mut self.store;
        let result = async {
            let ptr = self.alloc.call_async(&mut *store, len).await?;
            self.memory.write(&mut *store, ptr as usize, input)?;
            func.call_async(&mut *store, (ptr, len)).await
        }
        .await;
        let packed = match result {
            Ok(p) => p,
            Err(e) => return Err(classify(e, self.store.data_mut(), &self.limits)),
        };
        let value = read_envelope_with(&self.store, self.memory, packed, &self.limits, take);
        // The instance lives on, so the result buffer must go back to the guest's allocator.
        if let Some(dealloc) = self.dealloc.clone() {
            let (ptr, len) = ((packed >> 32) as u32, (packed & 0xffff_ffff) as u32);
            if let Err(e) = dealloc.call_async(&mut self.store, (ptr, len)).await {
                return Err(classify(e, self.store.data_mut(), &self.limits));
            }
        }
        value
    }
}
