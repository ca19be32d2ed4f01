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
