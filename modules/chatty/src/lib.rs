//! `chatty.shout`: prints `lines` lines to stdout. The node captures and bounds guest output.

/// Prints `lines` numbered lines and returns how many it printed.
#[steinadler::function]
fn shout(lines: u32) -> u32 {
    for i in 0..lines {
        println!("line {i}: chatty is shouting");
    }
    lines
}
