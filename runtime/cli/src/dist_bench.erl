%% A copy of shared/peers/erlang/dist_bench.erl, which `steinadler bench` compiles and runs
%% itself (runtime/cli/src/bench_erlang.rs) when erl is on the PATH.
%% Peer benchmark: Erlang Distribution round trip and throughput on loopback.
%% Measures erpc:call of a trivial function (echo of a small term) from node a to node b.
-module(dist_bench).
-export([main/1, echo/1, greet/1, counter/1]).

echo(X) -> X.
greet(Name) -> <<"hello ", Name/binary>>.

%% A counter process on the peer: counts `inc` messages, answers `{get, From}`.
counter(N) ->
    receive
        inc -> counter(N + 1);
        {get, From} -> From ! {count, N}, counter(N)
    end.

main([Peer, NStr, ConcStr]) ->
    PeerNode = list_to_atom(Peer),
    N = list_to_integer(NStr),
    Conc = list_to_integer(ConcStr),
    true = net_kernel:connect_node(PeerNode),
    %% make sure the module is loaded remotely (code shipped once)
    {module, dist_bench} = rpc:call(PeerNode, code, load_binary,
        [dist_bench, "dist_bench.erl", element(2, code:get_object_code(dist_bench))]),
    Arg = <<"world">>,
    [erpc:call(PeerNode, dist_bench, greet, [Arg]) || _ <- lists:seq(1, 2000)],
    %% sequential latency
    Lat = [begin T0 = erlang:monotonic_time(nanosecond),
                 _ = erpc:call(PeerNode, dist_bench, greet, [Arg]),
                 erlang:monotonic_time(nanosecond) - T0 end || _ <- lists:seq(1, N)],
    S = lists:sort(Lat),
    P50 = lists:nth(N div 2, S), P99 = lists:nth((N * 99) div 100, S),
    %% throughput with Conc concurrent callers
    Per = N div Conc,
    Self = self(),
    T1 = erlang:monotonic_time(nanosecond),
    [spawn(fun() -> [erpc:call(PeerNode, dist_bench, greet, [Arg]) || _ <- lists:seq(1, Per)], Self ! done end) || _ <- lists:seq(1, Conc)],
    [receive done -> ok end || _ <- lists:seq(1, Conc)],
    T2 = erlang:monotonic_time(nanosecond),
    Tput = (Per * Conc) / ((T2 - T1) / 1.0e9),
    %% async sends: 8 senders cast `inc` to one counter process on the peer, then one call proves all arrived
    Senders = 8, M = N * 5, PerS = M div Senders,
    Ctr = spawn(PeerNode, dist_bench, counter, [0]),
    T3 = erlang:monotonic_time(nanosecond),
    [spawn(fun() -> [Ctr ! inc || _ <- lists:seq(1, PerS)], Self ! sent end) || _ <- lists:seq(1, Senders)],
    [receive sent -> ok end || _ <- lists:seq(1, Senders)],
    Ctr ! {get, Self},
    Total = PerS * Senders,
    receive {count, Total} -> ok end,
    T4 = erlang:monotonic_time(nanosecond),
    SendRate = Total / ((T4 - T3) / 1.0e9),
    io:format("erlang_dist send_msgs_per_s=~.1f senders=~p messages=~p~n", [SendRate, Senders, Total]),
    io:format("erlang_dist rpc_p50_us=~.1f rpc_p99_us=~.1f throughput_calls_per_s=~.1f concurrency=~p~n",
              [P50 / 1000, P99 / 1000, Tput, Conc]),
    ok.
