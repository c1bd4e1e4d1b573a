from examtrail.cli.main import main

main()
