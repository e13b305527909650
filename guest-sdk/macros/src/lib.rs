//! The `#[steinadler::function]` attribute.
//!
//! This crate owns only code generation; everything the generated code calls lives in the
//! `steinadler` guest SDK under `steinadler::__private`, so the ABI is written once, in the SDK.
//! Use it through the SDK (`#[steinadler::function]`), never directly.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, ItemFn, Pat, ReturnType, Type, parse_macro_input, spanned::Spanned};

/// Exports a Rust function to the cluster under its own name.
///
/// The function keeps its Rust signature. The attribute adds a wasm export with the Steinadler ABI
/// (see `docs/abi.md`): it decodes the arguments from a MessagePack array, calls the function,
/// and encodes the result. A function returning `Result<T, E>` reports `Err(e)` to the caller as a
/// guest error carrying `e`.
///
/// # Errors
///
/// Compilation fails with a pointed message for `async` functions, generic functions, methods
/// (`self` arguments) and argument patterns other than plain names.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new(attr.span(), "#[steinadler::function] takes no arguments")
            .to_compile_error()
            .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    match expand(&func) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand(func: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let sig = &func.sig;
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new(
            token.span(),
            "#[steinadler::function] cannot export an async fn; make it synchronous",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "#[steinadler::function] cannot export a generic fn; use concrete types",
        ));
    }

    let mut arg_types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "#[steinadler::function] exports free functions, not methods",
                ));
            }
            FnArg::Typed(pt) => {
                if !matches!(&*pt.pat, Pat::Ident(_)) {
                    return Err(syn::Error::new(
                        pt.pat.span(),
                        "#[steinadler::function] arguments must be plain names, like `x: i64`",
                    ));
                }
                arg_types.push((*pt.ty).clone());
            }
        }
    }

    let name = &sig.ident;
    let export_name = name.to_string();
    let shim = format_ident!("__steinadler_export_{}", name);
    let idents: Vec<_> = (0..arg_types.len())
        .map(|i| format_ident!("__arg{}", i))
        .collect();

    let output = if returns_result(&sig.output) {
        quote!(::steinadler::__private::Output::result)
    } else {
        quote!(::steinadler::__private::Output::value)
    };

    // Arguments always arrive as a MessagePack array; zero arguments is the empty array.
    // Each is decoded on its own, so a mismatch names the argument that did not fit.
    let body = if arg_types.is_empty() {
        quote! {
            ::steinadler::__private::call0(ptr, len, || #output(#name()))
        }
    } else {
        let arity = arg_types.len();
        let names: Vec<String> = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(pt) => match &*pt.pat {
                    Pat::Ident(id) => Some(id.ident.to_string()),
                    _ => None,
                },
                FnArg::Receiver(_) => None,
            })
            .collect();
        let indices = 0..arity;
        quote! {
            struct __Args( #(#arg_types,)* );
            impl<'de> ::steinadler::serde::Deserialize<'de> for __Args {
                fn deserialize<D>(de: D) -> ::core::result::Result<Self, D::Error>
                where
                    D: ::steinadler::serde::Deserializer<'de>,
                {
                    struct V;
                    impl<'de> ::steinadler::serde::de::Visitor<'de> for V {
                        type Value = __Args;
                        fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                            ::steinadler::__private::expecting(f, #export_name, &[#(#names),*])
                        }
                        fn visit_seq<A>(self, mut seq: A) -> ::core::result::Result<__Args, A::Error>
                        where
                            A: ::steinadler::serde::de::SeqAccess<'de>,
                        {
                            let sig = ::steinadler::__private::Signature {
                                function: #export_name,
                                params: &[#(#names),*],
                            };
                            sig.check_len(seq.size_hint())?;
                            Ok(__Args( #( sig.next(&mut seq, #indices)?, )* ))
                        }
                    }
                    de.deserialize_seq(V)
                }
            }
            ::steinadler::__private::call(ptr, len, |__Args( #(#idents,)* ): __Args| {
                #output(#name( #(#idents),* ))
            })
        }
    };

    Ok(quote! {
        #func

        #[doc(hidden)]
        #[allow(non_snake_case)]
        #[unsafe(export_name = #export_name)]
        pub extern "C" fn #shim(ptr: u32, len: u32) -> u64 {
            #body
        }
    })
}

/// Whether the declared return type is spelled `Result<..>` (any path ending in `Result`).
fn returns_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Type::Path(path) = &**ty else {
        return false;
    };
    path.path
        .segments
        .last()
        .is_some_and(|seg| seg.ident == "Result")
}
