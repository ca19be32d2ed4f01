# The scalable remat heuristic (planners/remat/evict.cc) on generated random layered graphs
# (tests/data/remat/, scripts/random_layered.py): feasible, replayed to its reported peak, never
# below the optimum on small graphs; SolveRemat's deadline on n2000; the schedule JSON and its
# independent checker (validation/remat_check.py).
add_executable(remat_evict_test ${CMAKE_CURRENT_SOURCE_DIR}/remat_evict_test.cc)
target_link_libraries(remat_evict_test PRIVATE vramsim_remat_planner GTest::gtest_main)
target_compile_definitions(remat_evict_test PRIVATE
  VRAMSIM_REMAT_DATA="${CMAKE_CURRENT_SOURCE_DIR}/data/remat"
  VRAMSIM_REMAT_CHECK="${CMAKE_SOURCE_DIR}/validation/remat_check.py")
gtest_discover_tests(remat_evict_test TEST_PREFIX "remat." DISCOVERY_TIMEOUT 60)

# plan --json carries the schedule; the independent checker replays it from the graph file alone
# and holds the reported peak, cost and budget against it.
set(VRAMSIM_N500 ${CMAKE_SOURCE_DIR}/tests/data/remat/random_layered_n500.json)
add_test(NAME remat.plan_schedule_replayed_by_checker
         COMMAND sh -c "$<TARGET_FILE:vramsim> plan '${VRAMSIM_N500}' --budget-fraction 0.9 --time-limit 20 --json > '${CMAKE_CURRENT_BINARY_DIR}/remat_plan_n500.json' && python3 '${CMAKE_SOURCE_DIR}/validation/remat_check.py' '${VRAMSIM_N500}' '${CMAKE_CURRENT_BINARY_DIR}/remat_plan_n500.json'")
set_tests_properties(remat.plan_schedule_replayed_by_checker PROPERTIES TIMEOUT 120)

# The segment-covering lower bound (planners/remat/bound.cc): a hand-computed chain, and never
# above brute force's optimum on small graphs.
add_executable(remat_bound_test ${CMAKE_CURRENT_SOURCE_DIR}/remat_bound_test.cc)
target_link_libraries(remat_bound_test PRIVATE vramsim_remat_planner GTest::gtest_main)
gtest_discover_tests(remat_bound_test TEST_PREFIX "remat." DISCOVERY_TIMEOUT 60)
