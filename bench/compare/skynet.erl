%% Skynet and ping-pong in Erlang (processes and messages), the baseline of
%% reki-bench-skynet; run by tools/bench-runtimes.sh.
-module(skynet).
-export([main/1]).

skynet(Parent, Num, 1) ->
    Parent ! {sum, Num};
skynet(Parent, Num, Size) ->
    Child = Size div 10,
    Self = self(),
    [spawn(fun() -> skynet(Self, Num + I * Child, Child) end) || I <- lists:seq(0, 9)],
    Parent ! {sum, collect(10, 0)}.

collect(0, Sum) -> Sum;
collect(N, Sum) -> receive {sum, V} -> collect(N - 1, Sum + V) end.

pong() -> receive {ping, From} -> From ! pong, pong(); stop -> ok end.

pings(_, 0, Acc) -> Acc;
pings(P, N, Acc) ->
    T = erlang:monotonic_time(nanosecond),
    P ! {ping, self()},
    receive pong -> ok end,
    pings(P, N - 1, [erlang:monotonic_time(nanosecond) - T | Acc]).

pingpong(N) ->
    P = spawn(fun pong/0),
    T0 = erlang:monotonic_time(nanosecond),
    Lat = lists:sort(pings(P, N, [])),
    El = (erlang:monotonic_time(nanosecond) - T0) / 1.0e9,
    P ! stop,
    At = fun(Q) -> lists:nth(1 + trunc(Q * (N - 1)), Lat) / 1000 end,
    io:format("  pingpong: ~p round trips/s; round trip p50 ~.1f us, p99 ~.1f us, p99.9 ~.1f us, max ~.1f us~n",
              [round(N / El), At(0.5), At(0.99), At(0.999), lists:last(Lat) / 1000]).

main([Rounds]) ->
    lists:foreach(fun(_) ->
        T0 = erlang:monotonic_time(microsecond),
        Self = self(),
        spawn(fun() -> skynet(Self, 0, 1000000) end),
        Sum = receive {sum, S} -> S end,
        io:format("  skynet: sum ~p in ~.1f ms~n", [Sum, (erlang:monotonic_time(microsecond) - T0) / 1000]),
        pingpong(1000000)
    end, lists:seq(1, list_to_integer(Rounds))),
    halt().
