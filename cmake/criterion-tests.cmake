# Print a ctest -E regular expression matching every test of BUILD_DIR whose
# command runs a program linked against libcriterion (nothing if none).
# Criterion cannot start under ThreadSanitizer: its BoxFort arena is mapped
# at a random fixed address that TSan's mmap interceptor refuses
# ("Could not initialize inheritable arena", Snaipe/Criterion#274).
#   cmake -DBUILD_DIR=build-tsan -P cmake/criterion-tests.cmake
if(NOT BUILD_DIR)
  message(FATAL_ERROR "usage: cmake -DBUILD_DIR=<dir> -P criterion-tests.cmake")
endif()
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${BUILD_DIR} --show-only=json-v1
  OUTPUT_VARIABLE json RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ctest --show-only=json-v1 failed in ${BUILD_DIR}")
endif()

set(names "")
string(JSON ntests LENGTH "${json}" tests)
if(ntests GREATER 0)
  math(EXPR last "${ntests} - 1")
  foreach(i RANGE ${last})
    string(JSON name GET "${json}" tests ${i} name)
    string(JSON nargs ERROR_VARIABLE err LENGTH "${json}" tests ${i} command)
    if(err OR nargs EQUAL 0)
      continue()
    endif()
    math(EXPR alast "${nargs} - 1")
    foreach(j RANGE ${alast})
      string(JSON arg GET "${json}" tests ${i} command ${j})
      if(IS_ABSOLUTE "${arg}" AND EXISTS "${arg}" AND NOT IS_DIRECTORY "${arg}")
        execute_process(COMMAND readelf -d "${arg}" OUTPUT_VARIABLE dyn ERROR_QUIET)
        if(dyn MATCHES "NEEDED[^\n]*libcriterion")
          string(REGEX REPLACE "([][.*+?^$()|\\\\])" "\\\\\\1" escaped "${name}")
          list(APPEND names "${escaped}")
          break()
        endif()
      endif()
    endforeach()
  endforeach()
endif()
if(names)
  list(JOIN names "|" alternatives)
  execute_process(COMMAND ${CMAKE_COMMAND} -E echo "^(${alternatives})$")
endif()
