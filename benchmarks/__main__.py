from benchmarks.e2e import main

main()
