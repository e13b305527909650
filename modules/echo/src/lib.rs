//! `echo.echo`: returns its argument unchanged, for every Term type.

use steinadler::Term;

/// Returns `x`.
#[steinadler::function]
fn echo(x: Term) -> Term {
    x
}
