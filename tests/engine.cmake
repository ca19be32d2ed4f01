# The library layer (engine/): plan, strategies and fit called as the front ends call them.
add_executable(engine_test engine_test.cc)
target_link_libraries(engine_test PRIVATE vramsim_engine vramsim_engine_plan GTest::gtest_main)
target_compile_definitions(engine_test PRIVATE VRAMSIM_EXAMPLES="${CMAKE_SOURCE_DIR}/examples")
gtest_discover_tests(engine_test TEST_PREFIX "engine." DISCOVERY_TIMEOUT 60)

# Nothing below the front ends, nor the Python bindings, includes the command line (cli/).
add_test(NAME engine.no_cli_includes
         COMMAND bash -c "! grep -rl '\"cli/' importer simulator policies reports planners devices engine bindings"
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
