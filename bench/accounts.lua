-- wrk script for bench/run.sh: every request is a citizen lookup by one of the benchmark's
-- accounts (tokens lg_bench-0001 .. lg_bench-N, N from LG_BENCH_ACCOUNTS), chosen at random,
-- for a random citizen ID, with a dossier code. LG_BENCH_TOKEN fixes the token instead (the
-- refused path: one account far over its quota).
local n = tonumber(os.getenv("LG_BENCH_ACCOUNTS") or "1000")
local fixed = os.getenv("LG_BENCH_TOKEN")
local seq = 0

function setup(thread)
   seq = seq + 1
   thread:set("seed", seq)
end

function init(args)
   math.randomseed(os.time() * 100 + (seed or 0))
end

function request()
   local tok = fixed or string.format("lg_bench-%04d", math.random(n))
   local cid = string.format("0%02d%09d", math.random(1, 96), math.random(0, 999999999))
   return wrk.format("GET", "/api/v1/citizens/" .. cid, {
      ["Authorization"] = "Bearer " .. tok,
      ["X-Dossier-Id"] = string.format("HS-2026-%06d", math.random(999999)),
   })
end
