from vlmkit.cli.app import main

main()
