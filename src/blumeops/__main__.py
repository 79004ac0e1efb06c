from blumeops.cli import main

main()
